import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from farm_common.auth import is_loopback, redact, tokens_match
from render_node.cli import parse_settings
from render_node.credentials import Credentials
from render_node.registration import default_advertise_url, heartbeat_loop, local_ip_towards


@pytest.fixture
def no_farm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FARM_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_farm_env")
def test_cli_flags_map_onto_settings() -> None:
    settings = parse_settings(
        [
            "--port", "8200", "--data-dir", "/d", "--scenes-dir", "/s", "--blender", "/b",
            "--slots", "2", "--threads", "4", "--token", "t", "--orchestrator", "http://o:8000",
            "--advertise-url", "http://me:8200", "--max-upload-mb", "10", "--frame-timeout", "30",
            "--host", "0.0.0.0",
        ]
    )  # fmt: skip
    assert (settings.port, settings.data_dir, settings.scenes_dir) == (8200, Path("/d"), Path("/s"))
    assert (settings.blender, settings.slots, settings.threads) == ("/b", 2, 4)
    assert (settings.token, settings.orchestrator) == ("t", "http://o:8000")
    assert settings.advertise_url == "http://me:8200"
    assert (settings.max_upload_mb, settings.frame_timeout, settings.host) == (10, 30, "0.0.0.0")
    assert settings.log_level == "info"


@pytest.mark.usefixtures("no_farm_env")
def test_every_flag_falls_back_to_its_farm_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARM_BLENDER", "/opt/blender/blender")
    monkeypatch.setenv("FARM_TOKEN", "secret")
    monkeypatch.setenv("FARM_PORT", "8300")
    monkeypatch.setenv("FARM_FRAME_TIMEOUT", "12")
    settings = parse_settings(["--slots", "3"])
    assert settings.blender == "/opt/blender/blender"
    assert (settings.token, settings.port, settings.frame_timeout) == ("secret", 8300, 12)
    assert settings.resolved_data_dir == Path(".farm/node-8300")
    flag_wins = parse_settings(["--port", "8400"])
    assert flag_wins.port == 8400


@pytest.mark.usefixtures("no_farm_env")
def test_defaults_are_safe() -> None:
    settings = parse_settings([])
    assert settings.host == "127.0.0.1" and settings.slots == 1 and settings.threads == 0
    assert settings.frame_timeout == 1800 and settings.max_upload_mb == 2048


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_advertised_address_is_the_one_routing_to_the_orchestrator() -> None:
    assert local_ip_towards("http://127.0.0.1:8000") == "127.0.0.1"
    assert default_advertise_url("0.0.0.0", 8100, "http://127.0.0.1:8000") == (
        "http://127.0.0.1:8100"
    )
    assert default_advertise_url("127.0.0.1", 8101, None) == "http://127.0.0.1:8101"
    assert default_advertise_url("127.0.0.1", 8101, None, "https") == "https://127.0.0.1:8101"


def creds(token: str | None, folder: Path) -> Credentials:
    return Credentials(token=token, join_token=None, join_token_file=None, keep_in=folder)


def test_heartbeat_logs_unreachable_once_then_recovery(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    two_beats = asyncio.Event()
    answers = iter([False, False, False, True, True])
    posted: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if not next(answers, True):
            raise httpx.ConnectError("refused", request=request)
        posted.append({"auth": request.headers.get("authorization")})
        if len(posted) >= 2:
            two_beats.set()
        return httpx.Response(200, json={})

    async def payload() -> dict[str, Any]:
        return {"url": "http://me:1"}

    async def scenario() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        task = asyncio.create_task(
            heartbeat_loop(
                "http://o:1",
                payload,
                credentials=creds("t", tmp_path),
                interval=0.01,
                client=client,
            )
        )
        await asyncio.wait_for(two_beats.wait(), 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()

    with caplog.at_level(logging.INFO, logger="render_node.registration"):
        asyncio.run(scenario())
    warnings = [r for r in caplog.records if "cannot register" in r.getMessage()]
    assert len(warnings) == 1
    assert any("registered with orchestrator" in r.getMessage() for r in caplog.records)
    assert posted[0]["auth"] == "Bearer t"


@pytest.mark.parametrize(
    ("answers", "slept"),
    [
        # Until an orchestrator answers, the node's own interval; then the one it asks for.
        ([None, {"ok": True, "heartbeat_seconds": 0.5}], [10.0, 0.5, 0.5]),
        ([{"ok": True, "heartbeat_seconds": 3.0}], [3.0, 3.0, 3.0]),
        # Bounded: never a busy loop, never silent for minutes.
        ([{"ok": True, "heartbeat_seconds": 0.0}], [0.1, 0.1, 0.1]),
        ([{"ok": True, "heartbeat_seconds": 3600}], [60.0, 60.0, 60.0]),
        # An answer that says nothing usable keeps the interval.
        ([{"ok": True}, {"heartbeat_seconds": "soon"}], [10.0, 10.0, 10.0]),
    ],
)
def test_the_node_heartbeats_as_often_as_the_orchestrator_asks(
    answers: list[dict[str, Any] | None], slept: list[float], tmp_path: Path
) -> None:
    replies = iter(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        reply = next(replies, answers[-1])
        if reply is None:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=reply)

    async def payload() -> dict[str, Any]:
        return {"url": "http://me:1"}

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == len(slept):
            raise asyncio.CancelledError

    async def scenario() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        beat = heartbeat_loop(
            "http://o:1",
            payload,
            credentials=creds(None, tmp_path),
            interval=10.0,
            client=client,
            sleep=sleep,
        )
        with pytest.raises(asyncio.CancelledError):
            await beat
        await client.aclose()

    asyncio.run(scenario())
    assert waits == slept


@pytest.mark.parametrize(
    ("given", "token", "match"),
    [("s3cret", "s3cret", True), ("s3cre", "s3cret", False), ("", "s3cret", False),
     ("s3cret ", "s3cret", False), ("ünï", "ünï", True)],
)  # fmt: skip
def test_tokens_match_only_when_equal(given: str, token: str, match: bool) -> None:
    assert tokens_match(given, token) is match


def test_query_string_tokens_are_redacted() -> None:
    assert redact("GET /?token=abc&x=1 HTTP/1.1") == "GET /?token=***&x=1 HTTP/1.1"
    assert redact("/jobs?x=1&access_token=abc") == "/jobs?x=1&access_token=***"
    assert redact("/jobs?tokens=1") == "/jobs?tokens=1"
