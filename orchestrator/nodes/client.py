"""The render-node HTTP API as seen from the orchestrator: every call with an explicit timeout."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from farm_common.auth import auth_headers
from farm_common.frames import compact_frames
from farm_common.protocol import MAX_ARCHIVE_FRAMES
from orchestrator.nodes.archive import ArchiveError, FrameFiles, Piece, TarReader

CHUNK = 1 << 20
# A node without frames.tar is asked again after this long: it may have been upgraded.
ARCHIVE_RECHECK_SECONDS = 300.0


class NodeError(Exception):
    """The node did not answer usefully: network error, timeout or a 5xx."""


class NodeRejected(NodeError):
    """The node answered 4xx: it will not do this (bad scene, bad frames...)."""


class FrameMissing(NodeRejected):
    """The node says a frame is done but does not serve it (yet)."""


class SceneMissing(NodeRejected):
    """The node was sent a batch of an uploaded scene it does not hold (any more)."""


class NodeJobGone(NodeRejected):
    """The node no longer knows this job (it restarted or cleaned up)."""


class ArchiveUnsupported(NodeRejected):
    """The node has no frames.tar endpoint (a node from before it): fetch frame by frame."""


@dataclass(frozen=True)
class NodeJob:
    """A batch as the node took it: its job id there and, from nodes that send it, the job's
    status version then (the first poll can wait on the node for a change)."""

    id: str
    version: str | None = None


@dataclass(frozen=True)
class Answer:
    """A node's whole (small) answer: read at once, so its connection goes back to the pool."""

    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _detail(answer: Answer) -> str:
    try:
        body = answer.json()
        return str(body.get("detail") or body) if isinstance(body, dict) else str(body)
    except ValueError:
        return answer.body[:300].decode("utf-8", "replace")


class NodeClient:
    """Node calls over aiohttp: a render farm's orchestrator spends most of its CPU here, and
    aiohttp takes a third of httpx's CPU a request (benchmarks/RESULTS.md, sixth round)."""

    def __init__(
        self,
        token: str | None,
        request_timeout: float,
        transfer_timeout: float,
        clock: Callable[[], float] = time.monotonic,
        on_answer: Callable[[str], None] | None = None,
    ) -> None:
        self._headers = auth_headers(token)
        self._request_timeout = request_timeout
        self._clock = clock
        # Called with the node's URL whenever it answers (any status under 500): the registry
        # counts it as alive, so a node the scheduler talks to is never probed besides.
        self._on_answer = on_answer
        self._no_archive: dict[str, float] = {}  # node -> when it answered frames.tar 404/405
        # Per step, not in all: connecting (and waiting for a pooled connection) is quick even
        # for transfers, so a dead node does not hold a worker; then each read must come soon.
        self._short = self._timeout(request_timeout)
        self._long = self._timeout(transfer_timeout)
        # One small connection pool per node: nodes never queue behind each other's
        # connections, and a node's pool holds only its own.
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def _timeout(self, read: float) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None, connect=self._request_timeout, sock_connect=self._request_timeout,
            sock_read=read,
        )  # fmt: skip

    def _for(self, node: str) -> aiohttp.ClientSession:
        session = self._sessions.get(node)
        if session is None:
            # (ssl=True: aiohttp's one default context, shared; not a CA bundle loaded per node)
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, ssl=True),
                headers=self._headers,
                cookie_jar=aiohttp.DummyCookieJar(),  # nodes set none; skip the bookkeeping
                timeout=self._short,
            )
            self._sessions[node] = session
        return session

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    def _answered(self, node: str, method: str, url: str, status: int, body: bytes) -> Answer:
        answer = Answer(status, body)
        if status >= 500:
            raise NodeError(f"{method} {url}: {status} {_detail(answer)}")
        self._alive(node)
        return answer

    def _alive(self, node: str) -> None:
        if self._on_answer is not None:
            self._on_answer(node)

    async def _request(
        self,
        method: str,
        node: str,
        path: str,
        *,
        limits: aiohttp.ClientTimeout | None = None,
        **kw: Any,
    ) -> Answer:
        url = node + path
        try:
            async with self._for(node).request(
                method, url, timeout=limits or self._short, allow_redirects=False, **kw
            ) as resp:
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NodeError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        return self._answered(node, method, url, resp.status, body)

    async def info(self, node: str) -> dict[str, Any]:
        resp = await self._request("GET", node, "/info")
        if resp.status != 200:
            raise NodeRejected(f"GET {node}/info: {resp.status} {_detail(resp)}")
        data: dict[str, Any] = resp.json()
        return data

    async def has_scene(self, node: str, sha: str) -> bool:
        resp = await self._request("HEAD", node, f"/scenes/{sha}")
        if resp.status not in (200, 404):
            raise NodeRejected(f"HEAD {node}/scenes/{sha}: {resp.status}")
        return resp.status == 200

    async def put_scene(self, node: str, sha: str, path: Path) -> None:
        # A file body: aiohttp sends its size as Content-Length and reads it on a worker
        # thread, a chunk at a time.
        fh = await asyncio.to_thread(path.open, "rb")
        try:
            resp = await self._request(
                "PUT", node, f"/scenes/{sha}", data=fh, limits=self._long,
                headers={"Content-Type": "application/octet-stream"},
            )  # fmt: skip
        finally:
            await asyncio.to_thread(fh.close)
        if resp.status >= 300:
            raise NodeRejected(f"PUT {node}/scenes/{sha}: {resp.status} {_detail(resp)}")

    async def submit(self, node: str, scene: str, frames: str, fmt: str) -> NodeJob:
        body = {"scene": scene, "frames": frames, "format": fmt}
        resp = await self._request("POST", node, "/jobs", json=body)
        if resp.status == 404 and scene.startswith("sha256:"):
            # The one 404 of POST /jobs: the scene is not on the node (render_node/scenes.py).
            raise SceneMissing(f"{node} does not hold scene {scene[:19]}: {_detail(resp)}")
        if resp.status >= 300:
            raise NodeRejected(f"node refused the batch: {resp.status} {_detail(resp)}")
        created = resp.json()
        version = created.get("version")
        return NodeJob(str(created["id"]), version if isinstance(version, str) else None)

    async def status(
        self, node: str, job_id: str, *, wait: float = 0.0, since: str | None = None
    ) -> dict[str, Any]:
        """The node job's status; with `since` (a version it answered before), the node may
        hold the answer up to `wait` seconds until something changes."""
        params: dict[str, str] = {}
        limits = None
        if since is not None and wait > 0:
            params = {"wait": f"{wait:.3f}", "since": since}
            limits = self._timeout(self._request_timeout + wait)
        resp = await self._request("GET", node, f"/jobs/{job_id}", limits=limits, params=params)
        if resp.status == 404:
            raise NodeJobGone(f"{node} no longer knows job {job_id}")
        if resp.status != 200:
            raise NodeRejected(f"GET {node}/jobs/{job_id}: {resp.status} {_detail(resp)}")
        data: dict[str, Any] = resp.json()
        return data

    async def download(self, node: str, job_id: str, frame: int, dest: Path) -> int:
        """Stream a frame into `dest`; return its size."""
        url = f"{node}/jobs/{job_id}/frames/{frame}"
        size = 0
        try:
            async with self._for(node).get(url, timeout=self._long, allow_redirects=False) as resp:
                if resp.status != 200:
                    answer = self._answered(node, "GET", url, resp.status, await resp.read())
                    kind = FrameMissing if resp.status == 404 else NodeRejected
                    raise kind(f"GET {url}: {resp.status} {_detail(answer)}")
                self._alive(node)
                with dest.open("wb") as fh:
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        await asyncio.to_thread(fh.write, chunk)
                        size += len(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NodeError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
        return size

    def serves_archives(self, node: str) -> bool:
        """False for a while after the node turned out not to have frames.tar."""
        since = self._no_archive.get(node)
        if since is None:
            return True
        if self._clock() - since >= ARCHIVE_RECHECK_SECONDS:
            del self._no_archive[node]
            return True
        return False

    async def download_archive(
        self, node: str, job_id: str, frames: Sequence[int], files: FrameFiles
    ) -> None:
        """Fetch `frames` as frames.tar (several requests past the node's cap) into `files`.

        Members are put in place on a worker thread, a megabyte of them per hop: one hop for a
        poll's worth of small frames. A frame the archive lacks is simply not placed. Raises
        FrameMissing when the node says a frame is not done or sends a broken archive (what
        was placed stays), ArchiveUnsupported when the node has no such endpoint, NodeJobGone
        when it has no such job.
        """
        for start in range(0, len(frames), MAX_ARCHIVE_FRAMES):
            part = frames[start : start + MAX_ARCHIVE_FRAMES]
            await self._download_archive(node, job_id, compact_frames(part), files)

    async def _download_archive(self, node: str, job_id: str, spec: str, files: FrameFiles) -> None:
        url = f"{node}/jobs/{job_id}/frames.tar"
        reader = TarReader()
        pending: list[Piece] = []
        buffered = 0
        try:
            async with self._for(node).get(
                url, params={"frames": spec}, timeout=self._long, allow_redirects=False
            ) as resp:
                if resp.status != 200:
                    answer = self._answered(node, "GET", url, resp.status, await resp.read())
                    await self._archive_refused(node, job_id, url, answer)
                self._alive(node)
                async for chunk in resp.content.iter_chunked(CHUNK):
                    for piece in reader.feed(chunk):
                        pending.append(piece)
                        buffered += len(piece.data)
                    if buffered >= CHUNK:
                        await asyncio.to_thread(files.write, pending)
                        pending, buffered = [], 0
                reader.close()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NodeError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
        except ArchiveError as exc:
            await asyncio.to_thread(files.write, pending)  # the members that came whole
            raise FrameMissing(f"GET {url}: broken archive: {exc}") from None
        if pending:
            await asyncio.to_thread(files.write, pending)

    async def _archive_refused(self, node: str, job_id: str, url: str, resp: Answer) -> None:
        """Raise what a non-200 answer to frames.tar means."""
        code = resp.status
        if code == 404:
            # Either the job or the endpoint is unknown: the job's own status tells which.
            await self.status(node, job_id)  # raises NodeJobGone when it is the job
        if code in (404, 405):
            self._no_archive[node] = self._clock()
            raise ArchiveUnsupported(f"GET {url}: {code}: the node has no frames.tar")
        kind = FrameMissing if code == 409 else NodeRejected
        raise kind(f"GET {url}: {code} {_detail(resp)}")

    async def delete(self, node: str, job_id: str) -> None:
        await self._request("DELETE", node, f"/jobs/{job_id}")
