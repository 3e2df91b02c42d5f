"""Tokens on both services: every operation of the OpenAPI schema (and /docs, /openapi.json,
unknown paths) answers 401 without the token and 403 with a wrong one; /health and the
dashboard's data-free shells stay open; the token never reaches a log; an open service bound
beyond loopback says so at start-up."""

from __future__ import annotations

import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.datastructures import URL
from starlette.requests import HTTPConnection, Request

from orchestrator.api.app import create_app as create_orchestrator
from render_node.api import create_app as create_node
from render_node.settings import NodeSettings
from tests.integration.farm_procs import FAKE_BLENDER, base_env
from tests.orch_helpers import fast_settings
from tests.servers import free_port, run_cli, serve_app

TOKEN = "s3cret-token-value"
SCENES = Path(__file__).resolve().parents[2] / "scenes"


@pytest.fixture(params=["node", "orchestrator"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "node":
        settings = NodeSettings(
            data_dir=tmp_path / "node", scenes_dir=SCENES, blender=str(FAKE_BLENDER), token=TOKEN
        )
        app = create_node(settings)
    else:
        app = create_orchestrator(fast_settings(tmp_path, [], token=TOKEN))
    with serve_app(app) as url:
        yield url


def operations(url: str) -> list[tuple[str, str]]:
    schema = httpx.get(url + "/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert schema.status_code == 200
    ops = []
    for path, item in schema.json()["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x" * 64, path).replace("frames/" + "x" * 64, "frames/1")
        ops += [(method.upper(), concrete) for method in item if method != "parameters"]
    return ops


def test_every_operation_but_health_needs_the_token(service: str) -> None:
    ops = operations(service)
    assert len(ops) >= 8
    extra = [("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/no/such/path")]
    for method, path in ops + extra:
        if path == "/health":
            continue
        anonymous = httpx.request(method, service + path)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert anonymous.headers["www-authenticate"] == "Bearer"
        if method != "HEAD":
            assert anonymous.json()["error"] == "unauthorized"
            assert "Authorization: Bearer" in anonymous.json()["detail"]
        wrong = httpx.request(method, service + path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403, (method, path, wrong.text)
        basic = httpx.request(method, service + path, headers={"Authorization": f"Basic {TOKEN}"})
        assert basic.status_code == 401, (method, path)
    assert httpx.get(service + "/health").status_code == 200


def test_a_request_with_the_token_gets_through(service: str) -> None:
    ok = httpx.get(service + "/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200


def test_the_dashboard_shells_and_static_files_need_no_token(tmp_path: Path) -> None:
    with serve_app(create_orchestrator(fast_settings(tmp_path, [], token=TOKEN))) as url:
        for path in ("/", "/jobs/abc", "/static/farm.js"):
            response = httpx.get(url + path)
            assert response.status_code == 200, path
            assert TOKEN not in response.text
        # Not a prefix match: the API under /jobs-like or /static-like paths stays closed.
        assert httpx.get(url + "/render").status_code == 401
        assert httpx.get(url + "/jobs/abc/frames").status_code == 401


def orchestrator_argv(tmp_path: Path, port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "orchestrator", "--port", str(port),
        "--data-dir", str(tmp_path / "orch"), "--scenes-dir", str(SCENES), *extra,
    ]  # fmt: skip


def node_argv(tmp_path: Path, port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "render_node", "--port", str(port),
        "--data-dir", str(tmp_path / "node"), "--scenes-dir", str(SCENES),
        "--blender", str(FAKE_BLENDER), "--blender-env", "FAKE_BLENDER_*", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("argv", [orchestrator_argv, node_argv], ids=["orchestrator", "node"])
def test_the_token_never_reaches_the_log_even_in_a_query_string(tmp_path: Path, argv) -> None:
    port = free_port()
    command = argv(tmp_path, port, "--token", TOKEN, "--log-level", "debug")
    with run_cli(command, port=port, env=base_env()) as server:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        httpx.get(f"{server.url}/?token={TOKEN}&x=1")
        httpx.get(f"{server.url}/health?token={TOKEN}")
        httpx.get(f"{server.url}/nope?access_token={TOKEN}", headers=headers)
        httpx.get(f"{server.url}/openapi.json", headers={"Authorization": "Bearer wrong"})
        httpx.get(f"{server.url}/openapi.json", headers=headers)
        # Spelled the way the server still reads as the token, or with what ends a URL in text
        httpx.get(f"{server.url}/?tok%65n={TOKEN}&x=1")
        raw_get(server.url, f'/health?TOKEN=ab"{TOKEN}', "127.0.0.1")
        raw_get(server.url, f"/health?token=ab#{TOKEN}", "127.0.0.1")
        server.stop()
        output = server.output()
    assert "token=***" in output  # the access log is on, and redacted
    assert TOKEN not in output


@pytest.mark.parametrize("argv", [orchestrator_argv, node_argv], ids=["orchestrator", "node"])
def test_an_open_service_bound_beyond_loopback_warns_at_start(tmp_path: Path, argv) -> None:
    port = free_port()
    with run_cli(argv(tmp_path, port, "--host", "0.0.0.0"), port=port, env=base_env()) as server:
        server.stop()
        assert "without a token" in server.output()
    port = free_port()
    guarded = argv(tmp_path, port, "--host", "0.0.0.0", "--token", TOKEN)
    with run_cli(guarded, port=port, env=base_env()) as server:
        server.stop()
        assert "without a token" not in server.output()


@pytest.mark.parametrize("argv", [orchestrator_argv, node_argv], ids=["orchestrator", "node"])
def test_services_bind_loopback_by_default(tmp_path: Path, argv) -> None:
    port = free_port()
    with run_cli(argv(tmp_path, port), port=port, env=base_env()) as server:
        listening = Path("/proc/net/tcp").read_text()
        server.stop()
        assert "without a token" not in server.output()
    # 0100007F is 127.0.0.1 in /proc/net/tcp's little-endian hex
    assert f"0100007F:{port:04X}" in listening
    assert f"00000000:{port:04X}" not in listening


def raw_get(url: str, path: str, host: str) -> tuple[int, bytes]:
    """GET `path` with exactly this Host header (httpx would refuse or rewrite it)."""
    address = httpx.URL(url)
    with socket.create_connection((address.host, address.port), timeout=10) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


def url_from_host_header(self: HTTPConnection) -> URL:
    """request.url as Starlette built it before 1.0.1: the client's Host header pasted in front
    of the path, so `Host: x/health?` turns `/render` into `http://x/health?/render`."""
    scope = self.scope
    host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
    query = scope["query_string"].decode()
    return URL(f"{scope['scheme']}://{host}{scope['path']}" + (f"?{query}" if query else ""))


# A protected operation of each service, besides /openapi.json.
PROTECTED = {"node": "/info", "orchestrator": "/render"}


@pytest.mark.parametrize("host", ["x/health?", "127.0.0.1/health#", "x/health?a=", "x:1/health?"])
@pytest.mark.parametrize("starlette", ["installed", "before 1.0.1"])
def test_a_crafted_host_header_does_not_open_a_protected_path(
    service: str, host: str, starlette: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CVE-2026-48710: the token check read request.url.path, which Starlette before 1.0.1
    built from the Host header; `before 1.0.1` serves the app with that URL building back in,
    so this fails against a check that reads request.url rather than the routed path."""
    if starlette == "before 1.0.1":
        monkeypatch.setattr(HTTPConnection, "url", property(url_from_host_header))
        assert Request(request_scope("/render", host)).url.path == "/health"
    for path in ("/openapi.json", PROTECTED[kind_of(service)]):
        status, answer = raw_get(service, path, host)
        assert status == 401, answer[:300]
        assert b'"openapi"' not in answer
    status, _ = raw_get(service, "/health", host)
    assert status == 200


def request_scope(path: str, host: str) -> dict[str, object]:
    return {
        "type": "http",
        "scheme": "http",
        "path": path,
        "query_string": b"",
        "headers": [(b"host", host.encode())],
    }


def kind_of(url: str) -> str:
    """Which service answers at `url` (the `service` fixture yields only its URL)."""
    info = httpx.get(url + "/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    return "node" if "/jobs" in info.json()["paths"] else "orchestrator"
