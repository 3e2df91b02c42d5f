"""The web dashboard: HTML shells, their static JS/CSS, and the compact frame map the grid polls.

The pages hold no farm data: they are shells that poll the JSON API from the browser, sending
`Authorization: Bearer` when the farm has a token. So the shells and static files are served
without a token (they reveal nothing) and every byte of data still goes through the API's auth.
A browser navigation cannot send that header: the page takes the token once from `?token=`,
keeps it in sessionStorage (this tab only), drops it from the address bar, and asks for it in a
small form when the API answers 401/403.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse

from farm_common.errors import NotFound
from farm_common.protocol import FrameState
from orchestrator import __version__

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"

# Only these files are served from /static: no path from the URL ever reaches the filesystem.
STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "farm.js": "text/javascript; charset=utf-8",
    "overview.js": "text/javascript; charset=utf-8",
    "job.js": "text/javascript; charset=utf-8",
    "canvas.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# Paths an auth middleware must let through without a token (they carry no data).
PUBLIC_PATH_RE = re.compile(r"^/(|jobs/[^/]+|static/[^/]+)$")
JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# One character per frame in the frame map; what the grid (static/canvas.js) colours.
FRAME_STATE_CHARS: dict[str, str] = {
    FrameState.PENDING: "p",
    FrameState.RENDERING: "r",
    FrameState.DONE: "d",
    FrameState.FAILED: "f",
}


def framemap(frames: Sequence[int], states: Sequence[str]) -> dict[str, Any]:
    """The compact state of every frame of a job, for `GET /render/{id}/framemap`.

    `{"first": n, "states": "ddrrpp..f"}`, one char per frame in job order (p pending,
    r rendering, d done, f failed). Frame numbers are implied when they run
    `first, first+1, ...`; a regular step adds `"step"`; any other order lists `"frames"`.
    A 100,000-frame job is ~100 KB instead of a list of objects.
    """
    if len(frames) != len(states):
        raise ValueError(f"{len(frames)} frames but {len(states)} states")
    chars = []
    for state in states:
        char = FRAME_STATE_CHARS.get(state)
        if char is None and len(state) == 1 and state in "prdf":
            char = state
        if char is None:
            raise ValueError(f"unknown frame state {state!r}")
        chars.append(char)
    result: dict[str, Any] = {"first": frames[0] if frames else 0, "states": "".join(chars)}
    if len(frames) > 1:
        step = frames[1] - frames[0]
        regular = step > 0 and all(b - a == step for a, b in itertools.pairwise(frames))
        if not regular:
            result["frames"] = list(frames)
        elif step != 1:
            result["step"] = step
    return result


def is_public_path(path: str) -> bool:
    """True for the dashboard's shells and static files, which need no token (no data)."""
    return bool(PUBLIC_PATH_RE.fullmatch(path))


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


# Shells change only with the code: no caching surprises after an upgrade, no stale data either.
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def dashboard_router(token: str | None = None) -> APIRouter:
    """Routes for `/`, `/jobs/{id}` and `/static/{name}`; include it in the orchestrator app.

    `token` only tells the page up front that the farm wants one (it is never sent to it).
    """
    env = _environment()
    router = APIRouter(include_in_schema=False)
    auth = "token" if token else "open"

    def page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(template).render(auth=auth, version=__version__, **context)
        headers = {**NO_STORE, "Content-Security-Policy": CSP}
        return HTMLResponse(html, status_code=status_code, headers=headers)

    @router.get("/", response_class=HTMLResponse)
    async def overview() -> HTMLResponse:
        return page("dashboard_overview.html", page="overview", job_id="")

    @router.get("/jobs/{job_id}", response_class=HTMLResponse)
    async def job_page(job_id: str) -> HTMLResponse:
        if not JOB_ID_RE.fullmatch(job_id):
            return page("dashboard_notfound.html", 404, page="notfound", job_id=job_id[:80])
        return page("dashboard_job.html", page="job", job_id=job_id)

    @router.get("/static/{name}")
    async def static(name: str) -> FileResponse:
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            shipped = ", ".join(sorted(STATIC_FILES))
            raise NotFound(f"no static file {name[:80]!r}; the dashboard ships {shipped}")
        return FileResponse(
            STATIC_DIR / name, media_type=media_type, headers={"Cache-Control": "no-cache"}
        )

    return router


def mount_dashboard(app: FastAPI, token: str | None = None) -> None:
    """Add the dashboard to `app` (same as `app.include_router(dashboard_router(token))`)."""
    app.include_router(dashboard_router(token))
