"""The dashboard's frame map and its HTML shells: no data, no token needed, everything escaped."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from farm_common.errors import install_error_handlers
from orchestrator.dashboard.pages import (
    STATIC_DIR,
    STATIC_FILES,
    dashboard_router,
    framemap,
    is_public_path,
    mount_dashboard,
)


@pytest.mark.parametrize(
    ("frames", "states", "expected"),
    [
        ([1, 2, 3, 4], ["done", "done", "rendering", "pending"], {"first": 1, "states": "ddrp"}),
        ([101, 102], ["failed", "done"], {"first": 101, "states": "fd"}),
        ([7], ["pending"], {"first": 7, "states": "p"}),
        ([1, 3, 5, 7], ["d", "r", "p", "f"], {"first": 1, "step": 2, "states": "drpf"}),
        ([1, 3, 7], ["d", "d", "d"], {"first": 1, "frames": [1, 3, 7], "states": "ddd"}),
        ([10, 5, 1], ["p", "p", "p"], {"first": 10, "frames": [10, 5, 1], "states": "ppp"}),
        ([], [], {"first": 0, "states": ""}),
    ],
)
def test_framemap(frames: list[int], states: list[str], expected: dict[str, Any]) -> None:
    assert framemap(frames, states) == expected


def test_framemap_of_a_100000_frame_job_is_one_short_string() -> None:
    frames = list(range(1, 100_001))
    result = framemap(frames, ["done"] * 50_000 + ["pending"] * 50_000)
    assert set(result) == {"first", "states"}
    assert len(result["states"]) == 100_000


@pytest.mark.parametrize("state", ["exploded", "", "pr", "D", "queued", "collected", "c"])
def test_framemap_refuses_unknown_states(state: str) -> None:
    with pytest.raises(ValueError, match="unknown frame state"):
        framemap([1], [state])


def test_framemap_refuses_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 frames but 1 states"):
        framemap([1, 2], ["done"])


@pytest.mark.parametrize(
    ("path", "public"),
    [
        ("/", True),
        ("/jobs/abc-123", True),
        ("/static/app.js", True),
        ("/render", False),
        ("/render/abc", False),
        ("/nodes", False),
        ("/jobs/abc/frames", False),
        ("/static/sub/x.js", False),
        ("/metrics", False),
    ],
)
def test_only_the_data_free_shells_are_public(path: str, public: bool) -> None:
    assert is_public_path(path) is public


class Client:
    """Requests straight into the ASGI app, no server or socket needed."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def get(self, path: str) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://farm") as client:
                return await client.get(path)

        return asyncio.run(go())


@pytest.fixture
def client() -> Client:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(dashboard_router(token="s3cret"))
    return Client(app)


def test_overview_shell_is_html_without_data_or_token(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'data-page="overview"' in response.text
    assert 'data-auth="token"' in response.text
    assert "s3cret" not in response.text
    assert "/static/app.js" in response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"


def test_job_shell_carries_the_job_id(client: Client) -> None:
    response = client.get("/jobs/job_42-a")
    assert response.status_code == 200
    assert 'data-page="job"' in response.text
    assert 'data-job-id="job_42-a"' in response.text


def test_a_bad_job_id_gets_an_escaped_404_page(client: Client) -> None:
    response = client.get("/jobs/<script>alert(1)<")
    assert response.status_code == 404
    assert "<script>alert(1)" not in response.text
    assert "&lt;script&gt;alert(1)" in response.text


def test_without_a_token_the_page_is_told_the_farm_is_open() -> None:
    app = FastAPI()
    mount_dashboard(app)
    assert 'data-auth="open"' in Client(app).get("/").text


@pytest.mark.parametrize(
    ("name", "content_type", "needle"),
    [
        ("app.js", "text/javascript", "overviewPage"),
        ("farm.js", "text/javascript", "sessionStorage"),
        ("overview.js", "text/javascript", "/nodes"),
        ("job.js", "text/javascript", "/framemap"),
        ("canvas.js", "text/javascript", "getContext"),
        ("style.css", "text/css", "--done"),
    ],
)
def test_static_files_are_served_from_the_package(
    client: Client, name: str, content_type: str, needle: str
) -> None:
    response = client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    assert needle in response.text


@pytest.mark.parametrize("name", ["nope.js", "..%2Fdashboard.py", "%2E%2E%2F__init__.py"])
def test_unknown_static_files_are_404(client: Client, name: str) -> None:
    response = client.get(f"/static/{name}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_every_shipped_file_is_served_and_every_module_import_resolves() -> None:
    shipped = {p.name for p in STATIC_DIR.iterdir() if p.suffix in (".js", ".css")}
    assert shipped == set(STATIC_FILES)
    for name in shipped:
        for imported in re.findall(r'from "\./([\w.]+)"', (STATIC_DIR / name).read_text()):
            assert imported in STATIC_FILES, f"{name} imports {imported}, which is not served"


@pytest.mark.parametrize("name", sorted(n for n in STATIC_FILES if n.endswith(".js")))
def test_scripts_never_write_html_from_data(name: str) -> None:
    source = (STATIC_DIR / name).read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source
