"""Limits on both services: bodies counted while they stream in (chunked ones too), JSON bodies
capped, jobs queued per orchestrator, and POST /render rate-limited per client."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from orchestrator.api.app import create_app
from tests.integration.conftest import StartNode
from tests.orch_helpers import BLEND, fast_settings
from tests.servers import serve_app

MB = 1 << 20


def send_chunked_without_end(url: str, path: str, content_type: str, chunks: list[bytes]) -> str:
    """POST `chunks` with Transfer-Encoding: chunked and never finish the body; return the
    status line the server answers with (it must answer before the body ends)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        for chunk in chunks:
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except OSError:
                break  # the server answered and closed: what we want
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        head_part, _, body = answer.partition(b"\r\n\r\n")
        lines = head_part.decode().split("\r\n")
        length = next(
            (
                int(v)
                for k, _, v in (h.partition(": ") for h in lines)
                if k.lower() == "content-length"
            ),
            0,
        )
        while len(body) < length:
            data = sock.recv(65536)
            if not data:
                break
            body += data
        status = lines[0]
        return status + "\n" + body.decode(errors="replace")


def multipart_chunks(total: int) -> list[bytes]:
    boundary = "farmboundary"
    first = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="big.blend"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode() + BLEND
    return [first] + [b"\0" * 65536] * (total // 65536)


def test_orchestrator_refuses_an_oversize_chunked_upload_while_it_streams(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, [], max_upload_mb=1)
    with serve_app(create_app(settings)) as url:
        # 3 MB sent of a body that never ends: the answer must come before the end.
        answer = send_chunked_without_end(
            url, "/scenes", "multipart/form-data; boundary=farmboundary", multipart_chunks(3 * MB)
        )
        status, _, body = answer.partition("\n")
        assert " 413 " in status, answer[:300]
        error = json.loads(body[body.index("{") :])
        assert error["error"] == "payload_too_large"
        assert "1 MB" in error["detail"] and "--max-upload-mb" in error["detail"]
        # Nothing of it is kept, and a normal upload still works.
        assert not [p for p in settings.uploads_dir.iterdir() if p.stat().st_size > MB]
        ok = httpx.post(url + "/scenes", files={"file": ("ok.blend", BLEND)})
        assert ok.status_code == 201


def test_orchestrator_refuses_a_declared_oversize_upload_before_reading(tmp_path: Path) -> None:
    with serve_app(create_app(fast_settings(tmp_path, [], max_upload_mb=1))) as url:
        big = httpx.post(url + "/scenes", files={"file": ("big.blend", BLEND + b"\0" * 2 * MB)})
        assert big.status_code == 413
        assert big.json()["error"] == "payload_too_large"


def test_orchestrator_caps_json_bodies_chunked_or_not(tmp_path: Path) -> None:
    huge = json.dumps({"frames": "1", "pad": "x" * (2 * MB)}).encode()
    job = json.dumps({"scene": "demo.blend", "frames": "1", "pad": "x" * (9 * MB)}).encode()
    with serve_app(create_app(fast_settings(tmp_path, []))) as url:
        declared = httpx.post(
            url + "/files/missing", content=huge, headers={"content-type": "application/json"}
        )
        assert declared.status_code == 413
        assert "1 MB" in declared.json()["detail"]
        # A job may carry a manifest of 20,000 files: 8 MB, no more.
        declared = httpx.post(
            url + "/render", content=job, headers={"content-type": "application/json"}
        )
        assert declared.status_code == 413
        assert "8 MB" in declared.json()["detail"]
        answer = send_chunked_without_end(
            url,
            "/render",
            "application/json",
            [job[i : i + 65536] for i in range(0, 9 * MB, 65536)],
        )
        assert " 413 " in answer.partition("\n")[0], answer[:300]


def test_node_caps_json_bodies(start_node: StartNode) -> None:
    node = start_node()
    huge = json.dumps({"scene": "demo.blend", "frames": "1", "pad": "x" * (9 * MB)})
    response = node.client.post("/jobs", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    answer = send_chunked_without_end(node.url, "/jobs", "application/json", [b"x" * 65536] * 140)
    assert " 413 " in answer.partition("\n")[0], answer[:300]
    answer = send_chunked_without_end(
        node.url, "/files/missing", "application/json", [b"x" * 65536] * 40
    )
    assert " 413 " in answer.partition("\n")[0], answer[:300]


def test_orchestrator_refuses_jobs_past_max_queued_jobs(tmp_path: Path) -> None:
    # No nodes: every job stays queued.
    with (
        serve_app(create_app(fast_settings(tmp_path, [], max_queued_jobs=2))) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        body = {"scene": "demo.blend", "frames": "1-3"}
        first = client.post("/render", json=body)
        assert first.status_code == 202
        assert client.post("/render", json=body).status_code == 202
        refused = client.post("/render", json=body)
        assert refused.status_code == 429
        assert refused.json()["error"] == "too_many_requests"
        assert "--max-queued-jobs" in refused.json()["detail"]
        assert int(refused.headers["retry-after"]) > 0
        assert client.delete(f"/render/{first.json()['id']}").status_code == 200
        assert client.post("/render", json=body).status_code == 202


def test_orchestrator_rate_limits_post_render_per_client(tmp_path: Path) -> None:
    with (
        serve_app(create_app(fast_settings(tmp_path, [], rate_limit=3))) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        body = {"scene": "demo.blend", "frames": "1"}
        assert [client.post("/render", json=body).status_code for _ in range(3)] == [202] * 3
        limited = client.post("/render", json=body)
        assert limited.status_code == 429
        assert "--rate-limit" in limited.json()["detail"]
        # 3 a minute: the next token comes in ~20 s.
        assert 15 <= int(limited.headers["retry-after"]) <= 21
        # Reads are not limited.
        assert client.get("/render").status_code == 200


@pytest.mark.parametrize("per_minute", [600.0])
def test_default_rate_limit_lets_a_burst_of_submissions_through(
    tmp_path: Path, per_minute: float
) -> None:
    settings = fast_settings(tmp_path, [])
    assert settings.rate_limit == per_minute
    with (
        serve_app(create_app(settings)) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        codes = {client.post("/render", json={"scene": "demo.blend", "frames": "1"}).status_code
                 for _ in range(100)}  # fmt: skip
        assert codes == {202}
