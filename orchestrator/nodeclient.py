"""The render-node HTTP API as seen from the orchestrator: every call with an explicit timeout."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from orchestrator.archive import ArchiveError, FrameFiles, Piece, TarReader
from render_node.archive import MAX_ARCHIVE_FRAMES
from render_node.auth import auth_headers
from render_node.frames import compact_frames

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


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        return str(body.get("detail") or body)
    except ValueError:
        return resp.text[:300]


class NodeClient:
    def __init__(
        self,
        token: str | None,
        request_timeout: float,
        transfer_timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_answer: Callable[[str], None] | None = None,
    ) -> None:
        self._headers = auth_headers(token)
        # Called with the node's URL whenever it answers (any status under 500): the registry
        # counts it as alive, so a node the scheduler talks to is never probed besides.
        self._on_answer = on_answer
        self._request_timeout = request_timeout
        self._clock = clock
        self._no_archive: dict[str, float] = {}  # node -> when it answered frames.tar 404/405
        self._short = httpx.Timeout(request_timeout)
        # Connecting stays quick even for transfers: a dead node must not hold a worker.
        self._long = httpx.Timeout(transfer_timeout, connect=request_timeout)
        self._transport = transport
        # One small connection pool per node: a single pool shared by 100 nodes costs a scan
        # of every pooled connection on each request (most of the CPU of a large farm).
        self._clients: dict[str, httpx.AsyncClient] = {}
        # One TLS context for all of them: each client would otherwise load the CA bundle into
        # its own (~0.8 MB and ~15 ms a node: 84 MB of a 100-node orchestrator's RSS).
        self._ssl: ssl.SSLContext | None = None

    def _for(self, node: str) -> httpx.AsyncClient:
        key = node
        client = self._clients.get(key)
        if client is None:
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
            client = httpx.AsyncClient(
                transport=self._transport,
                verify=self._ssl,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            )
            self._clients[key] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    async def _request(
        self, method: str, node: str, path: str, *, limits: httpx.Timeout | None = None, **kw: Any
    ) -> httpx.Response:
        url = node + path
        try:
            headers = {**self._headers, **kw.pop("headers", {})}
            resp = await self._for(node).request(
                method, url, headers=headers, timeout=limits or self._short, **kw
            )
        except httpx.HTTPError as exc:
            raise NodeError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 500:
            raise NodeError(f"{method} {url}: {resp.status_code} {_detail(resp)}")
        if self._on_answer is not None:
            self._on_answer(node)
        return resp

    async def info(self, node: str) -> dict[str, Any]:
        resp = await self._request("GET", node, "/info")
        if resp.status_code != 200:
            raise NodeRejected(f"GET {node}/info: {resp.status_code} {_detail(resp)}")
        data: dict[str, Any] = resp.json()
        return data

    async def has_scene(self, node: str, sha: str) -> bool:
        resp = await self._request("HEAD", node, f"/scenes/{sha}")
        if resp.status_code not in (200, 404):
            raise NodeRejected(f"HEAD {node}/scenes/{sha}: {resp.status_code}")
        return resp.status_code == 200

    async def put_scene(self, node: str, sha: str, path: Path) -> None:
        size = (await asyncio.to_thread(path.stat)).st_size

        async def chunks() -> AsyncIterator[bytes]:
            with path.open("rb") as fh:
                while chunk := await asyncio.to_thread(fh.read, CHUNK):
                    yield chunk

        resp = await self._request(
            "PUT",
            node,
            f"/scenes/{sha}",
            content=chunks(),
            limits=self._long,
            headers={"Content-Length": str(size)},
        )
        if resp.status_code >= 300:
            raise NodeRejected(f"PUT {node}/scenes/{sha}: {resp.status_code} {_detail(resp)}")

    async def submit(self, node: str, scene: str, frames: str, fmt: str) -> str:
        body = {"scene": scene, "frames": frames, "format": fmt}
        resp = await self._request("POST", node, "/jobs", json=body)
        if resp.status_code == 404 and scene.startswith("sha256:"):
            # The one 404 of POST /jobs: the scene is not on the node (render_node/scenes.py).
            raise SceneMissing(f"{node} does not hold scene {scene[:19]}: {_detail(resp)}")
        if resp.status_code >= 300:
            raise NodeRejected(f"node refused the batch: {resp.status_code} {_detail(resp)}")
        return str(resp.json()["id"])

    async def status(
        self, node: str, job_id: str, *, wait: float = 0.0, since: str | None = None
    ) -> dict[str, Any]:
        """The node job's status; with `since` (a version it answered before), the node may
        hold the answer up to `wait` seconds until something changes."""
        params: dict[str, str] = {}
        limits = None
        if since is not None and wait > 0:
            params = {"wait": f"{wait:.3f}", "since": since}
            limits = httpx.Timeout(self._request_timeout + wait, connect=self._request_timeout)
        resp = await self._request("GET", node, f"/jobs/{job_id}", limits=limits, params=params)
        if resp.status_code == 404:
            raise NodeJobGone(f"{node} no longer knows job {job_id}")
        if resp.status_code != 200:
            raise NodeRejected(f"GET {node}/jobs/{job_id}: {resp.status_code} {_detail(resp)}")
        data: dict[str, Any] = resp.json()
        return data

    async def download(self, node: str, job_id: str, frame: int, dest: Path) -> int:
        """Stream a frame into `dest`; return its size."""
        url = f"{node}/jobs/{job_id}/frames/{frame}"
        size = 0
        try:
            async with self._for(node).stream(
                "GET", url, headers=self._headers, timeout=self._long
            ) as resp:
                if resp.status_code >= 500:
                    raise NodeError(f"GET {url}: {resp.status_code}")
                if resp.status_code != 200:
                    await resp.aread()
                    kind = FrameMissing if resp.status_code == 404 else NodeRejected
                    raise kind(f"GET {url}: {resp.status_code} {_detail(resp)}")
                with dest.open("wb") as fh:
                    async for chunk in resp.aiter_bytes(CHUNK):
                        await asyncio.to_thread(fh.write, chunk)
                        size += len(chunk)
        except httpx.HTTPError as exc:
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
            async with self._for(node).stream(
                "GET", url, params={"frames": spec}, headers=self._headers, timeout=self._long
            ) as resp:
                if resp.status_code >= 500:
                    raise NodeError(f"GET {url}: {resp.status_code}")
                if resp.status_code != 200:
                    await resp.aread()
                    await self._archive_refused(node, job_id, url, resp)
                async for chunk in resp.aiter_bytes(CHUNK):
                    for piece in reader.feed(chunk):
                        pending.append(piece)
                        buffered += len(piece.data)
                    if buffered >= CHUNK:
                        await asyncio.to_thread(files.write, pending)
                        pending, buffered = [], 0
                reader.close()
        except httpx.HTTPError as exc:
            raise NodeError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
        except ArchiveError as exc:
            await asyncio.to_thread(files.write, pending)  # the members that came whole
            raise FrameMissing(f"GET {url}: broken archive: {exc}") from None
        if pending:
            await asyncio.to_thread(files.write, pending)

    async def _archive_refused(
        self, node: str, job_id: str, url: str, resp: httpx.Response
    ) -> None:
        """Raise what a non-200 answer to frames.tar means."""
        code = resp.status_code
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
