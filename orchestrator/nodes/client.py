"""The render-node HTTP API as seen from the orchestrator: every call with an explicit timeout,
every answer read into the wire's models (farm_common.protocol), every failure a NodeError."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from farm_common.auth import auth_headers
from farm_common.frames import compact_frames
from farm_common.manifest import Manifest
from farm_common.protocol import (
    MAX_ARCHIVE_FRAMES,
    MAX_MESSAGE_CHARS,
    FilesMissing,
    JobCreated,
    JobDetail,
    NodeInfo,
    SampleRange,
    Tile,
)
from orchestrator.nodes.archive import ArchiveError, FrameFiles, Piece, TarReader

CHUNK = 1 << 20
# Nodes are not trusted: every answer is read with a bound. Info, submit and delete answers are
# small; a status holds one entry per frame of the batch, with at most MAX_MESSAGE_CHARS of
# error each (JSON escaping may swell those).
MAX_ANSWER_BYTES = 1 << 20
STATUS_BYTES_PER_FRAME = 4 * MAX_MESSAGE_CHARS + 256
DEFAULT_MIN_RATE = 64 << 10  # bytes a second: slower transfers are given up (see settings)


def status_limit(frames: int) -> int:
    """The most bytes a node's status of a batch of `frames` frames may take."""
    return MAX_ANSWER_BYTES + frames * STATUS_BYTES_PER_FRAME


M = TypeVar("M", bound=BaseModel)


class NodeError(Exception):
    """The node did not answer usefully: network error, timeout or a 5xx."""


class NodeRejected(NodeError):
    """The node answered 4xx: it will not do this (bad scene, bad frames...)."""


class MalformedAnswer(NodeRejected):
    """The node answered 2xx with a body that is not what the protocol says it sends."""


class AnswerTooLarge(MalformedAnswer):
    """The node's answer is larger than any answer of the protocol can be."""


class TooSlow(NodeError):
    """A transfer went on below the farm's lowest acceptable rate."""


class FrameMissing(NodeRejected):
    """The node says a frame is done but does not serve it (yet)."""


class SceneMissing(NodeRejected):
    """The node was sent a batch of an uploaded scene it does not hold (any more)."""


class NodeJobGone(NodeRejected):
    """The node no longer knows this job (it restarted or cleaned up)."""


@contextlib.contextmanager
def transport_errors(method: str, url: str) -> Iterator[None]:
    """The one place aiohttp's failures become NodeError (httpx's `map_exceptions`)."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise NodeError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class Answer:
    """A node's whole (small) answer: read at once, so its connection goes back to the pool."""

    method: str
    url: str
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def detail(self) -> str:
        """What the node says went wrong, cut to a message's length: it ends up in errors the
        store keeps and the API shows."""
        try:
            body = self.json()
            said = str(body.get("detail") or body) if isinstance(body, dict) else str(body)
        except ValueError:
            return self.body[:300].decode("utf-8", "replace")
        return said[:MAX_MESSAGE_CHARS]

    def refused(self, kind: type[NodeRejected] = NodeRejected) -> NodeRejected:
        return kind(f"{self.method} {self.url}: {self.status} {self.detail()}")

    def model(self, model: type[M]) -> M:
        """The body as `model`; a body that is not one costs the call, never the caller."""
        try:
            return model.model_validate_json(self.body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                for e in exc.errors()[:3]
            )
            raise MalformedAnswer(
                f"{self.method} {self.url}: malformed {model.__name__} from the node: {problems}"
            ) from None


class NodeClient:
    """Node calls over aiohttp: a render farm's orchestrator spends most of its CPU here, and
    aiohttp takes a third of httpx's CPU a request (benchmarks/RESULTS.md, sixth round)."""

    def __init__(
        self,
        token: str | None,
        request_timeout: float,
        transfer_timeout: float,
        on_answer: Callable[[str], None] | None = None,
        min_rate: float = DEFAULT_MIN_RATE,
        key_of: Callable[[str], str | None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._ssl: ssl.SSLContext | bool = ssl_context or True
        # What a node is asked with: the key it registered with (a node that joined checks
        # it, render_node/credentials.py), or else the farm's token (a static node).
        self._token = token
        self._key_of = key_of
        self._request_timeout = request_timeout
        self._transfer_timeout = transfer_timeout
        # A transfer may take `transfer_timeout`, and past that must average this many bytes
        # a second: aiohttp's read timeout alone lets a node drip a byte a minute for ever.
        self._min_rate = min_rate
        # Called with the node's URL whenever it answers (any status under 500): the registry
        # counts it as alive, so a node the scheduler talks to is never probed besides.
        self._on_answer = on_answer
        # Per step, not in all: connecting (and waiting for a pooled connection) is quick even
        # for transfers, so a dead node does not hold a worker; then each read must come soon.
        # aiohttp's timeouts are per read: each call also has a deadline for the whole
        # exchange (`_request`, `_download_archive`), or a node could drip an answer for days.
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

    def _auth(self, node: str) -> dict[str, str]:
        key = self._key_of(node) if self._key_of else None
        return auth_headers(key or self._token)

    def _for(self, node: str) -> aiohttp.ClientSession:
        session = self._sessions.get(node)
        if session is None:
            # (ssl=True: aiohttp's one default context, shared; not a CA bundle loaded per node)
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, ssl=self._ssl),
                cookie_jar=aiohttp.DummyCookieJar(),  # nodes set none; skip the bookkeeping
                timeout=self._short,
            )
            self._sessions[node] = session
        return session

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    def _answered(self, node: str, answer: Answer) -> Answer:
        if answer.status >= 500:
            raise NodeError(f"{answer.method} {answer.url}: {answer.status} {answer.detail()}")
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
        max_bytes: int = MAX_ANSWER_BYTES,
        deadline: float | None = None,
        **kw: Any,
    ) -> Answer:
        """One exchange, its answer read whole; within `deadline` seconds in all (default: the
        read timeout, plus the largest answer allowed at the farm's lowest rate)."""
        url = node + path
        limits = limits or self._short
        if deadline is None:
            deadline = (limits.sock_read or self._request_timeout) + max_bytes / self._min_rate
        try:
            async with asyncio.timeout(deadline):
                with transport_errors(method, url):
                    async with self._for(node).request(
                        method, url, timeout=limits, allow_redirects=False,
                        headers={**self._auth(node), **kw.pop("headers", {})}, **kw,
                    ) as resp:  # fmt: skip
                        body = await read_bounded(resp, max_bytes, f"{method} {url}")
        except TimeoutError:
            raise TooSlow(
                f"{method} {url}: no whole answer within {deadline:.0f} s "
                "(--min-transfer-kb-per-second)"
            ) from None
        return self._answered(node, Answer(method, url, resp.status, body))

    def _deadline(self, size: int | None = None) -> float:
        """Seconds a transfer of `size` bytes may take in all: `transfer_timeout`, or more at
        the farm's lowest rate."""
        return max(self._transfer_timeout, (size or 0) / self._min_rate)

    def _too_slow(self, what: str, received: int, elapsed: float) -> TooSlow:
        return TooSlow(
            f"{what}: {received} bytes in {elapsed:.0f} s, under the farm's lowest rate of "
            f"{self._min_rate / 1024:g} KB/s (--min-transfer-kb-per-second)"
        )

    async def info(self, node: str) -> NodeInfo:
        resp = await self._request("GET", node, "/info")
        if resp.status != 200:
            raise resp.refused()
        return resp.model(NodeInfo)

    async def has_scene(self, node: str, sha: str) -> bool:
        resp = await self._request("HEAD", node, f"/scenes/{sha}")
        if resp.status not in (200, 404):
            raise resp.refused()
        return resp.status == 200

    async def put_scene(self, node: str, sha: str, path: Path) -> None:
        await self._put(node, f"/scenes/{sha}", path)

    async def missing_files(self, node: str, shas: list[str]) -> list[str]:
        """Which of a packed shot's files the node lacks, in one request."""
        resp = await self._request("POST", node, "/files/missing", json={"files": shas})
        if resp.status != 200:
            raise resp.refused()
        return resp.model(FilesMissing).missing

    async def put_file(self, node: str, sha: str, path: Path) -> None:
        await self._put(node, f"/files/{sha}", path)

    async def _put(self, node: str, url_path: str, path: Path) -> None:
        # A file body: aiohttp sends its size as Content-Length and reads it on a worker
        # thread, a chunk at a time.
        size = (await asyncio.to_thread(path.stat)).st_size
        fh = await asyncio.to_thread(path.open, "rb")
        try:
            # The whole push, answer included, within its deadline: a node that takes the
            # bytes a few a second cannot hold the batch (aiohttp's timeouts are per read).
            resp = await self._request(
                "PUT", node, url_path, data=fh, limits=self._long,
                deadline=self._deadline(size) + self._request_timeout,
                headers={"Content-Type": "application/octet-stream"},
            )  # fmt: skip
        finally:
            await asyncio.to_thread(fh.close)
        if resp.status >= 300:
            raise resp.refused()

    async def submit(
        self,
        node: str,
        scene: str | None,
        frames: str,
        fmt: str | None,
        *,
        manifest: Manifest | None = None,
        allow_missing: bool = False,
        session: str | None = None,
        tile: Tile | None = None,
        samples: SampleRange | None = None,
        develop: dict[int, str] | None = None,
    ) -> JobCreated:
        """Hand the node a batch of a scene or of a packed shot (its files pushed first); the
        answer carries the job's status version, so the first poll can wait for a change.
        `fmt` None: the node renders the scene's own output settings."""
        body: dict[str, Any] = {"frames": frames}
        if manifest is not None:
            body["manifest"] = manifest.model_dump()
        else:
            body["scene"] = scene
        if fmt is not None:
            body["format"] = fmt
        if allow_missing:
            body["allow_missing"] = True
        if session is not None:  # the job: a bpy node keeps its scene loaded for the next
            body["session"] = session
        if tile is not None:  # one region of each frame
            body["tile"] = tile.model_dump()
        if samples is not None:  # a part of each frame's samples
            body["samples"] = samples.model_dump()
        if develop is not None:  # frame -> merged image (pushed first) to save as the frame
            body["develop"] = {str(frame): sha for frame, sha in develop.items()}
        resp = await self._request("POST", node, "/jobs", json=body)
        if resp.status == 404:
            # The one 404 of POST /jobs: the scene, or a file of the shot, is not on the node
            # (render_node/scenes.py, render_node/files.py).
            what = "a file of the shot" if manifest is not None else f"scene {scene}"
            raise SceneMissing(f"{node} does not hold {what}: {resp.detail()}")
        if resp.status >= 300:
            raise NodeRejected(f"node refused the batch: {resp.status} {resp.detail()}")
        return resp.model(JobCreated)

    async def status(
        self,
        node: str,
        job_id: str,
        *,
        wait: float = 0.0,
        since: str | None = None,
        frames: int = MAX_ARCHIVE_FRAMES,
    ) -> JobDetail:
        """The node job's status (of a batch of `frames` frames, which bounds its size); with
        `since` (a version it answered before), the node holds the answer up to `wait` seconds
        until something changes."""
        params: dict[str, str] = {}
        limits = None
        if since is not None and wait > 0:
            params = {"wait": f"{wait:.3f}", "since": since}
            limits = self._timeout(self._request_timeout + wait)
        resp = await self._request(
            "GET", node, f"/jobs/{job_id}", limits=limits, params=params,
            max_bytes=status_limit(frames),
        )  # fmt: skip
        if resp.status == 404:
            raise NodeJobGone(f"{node} no longer knows job {job_id}")
        if resp.status != 200:
            raise resp.refused()
        return resp.model(JobDetail)

    async def download_archive(
        self, node: str, job_id: str, frames: Sequence[int], files: FrameFiles
    ) -> None:
        """Fetch `frames` as frames.tar (several requests past the node's cap) into `files`.

        Members are put in place on a worker thread, a megabyte of them per hop: one hop for a
        poll's worth of small frames. A frame the archive lacks is simply not placed. Raises
        FrameMissing when the node says a frame is not done or sends a broken archive (what
        was placed stays), NodeJobGone when it has no such job.
        """
        for start in range(0, len(frames), MAX_ARCHIVE_FRAMES):
            part = frames[start : start + MAX_ARCHIVE_FRAMES]
            await self._download_archive(node, job_id, compact_frames(part), files)

    async def _download_archive(self, node: str, job_id: str, spec: str, files: FrameFiles) -> None:
        """One frames.tar. The whole transfer has a deadline that grows with what came:
        `transfer_timeout`, or as long as the bytes so far take at the farm's lowest rate; a
        node that drips (or sends nothing) is given up when it passes, even mid-read. Only the
        network waits are under it: a write on a worker thread is never cut off midway."""
        url = f"{node}/jobs/{job_id}/frames.tar"
        reader = TarReader()
        pending: list[Piece] = []
        buffered = received = 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            with transport_errors("GET", url):
                async with contextlib.AsyncExitStack() as stack:
                    deadline = asyncio.timeout_at(start + self._deadline())
                    try:
                        async with deadline:
                            resp = await stack.enter_async_context(
                                self._for(node).get(
                                    url, params={"frames": spec}, timeout=self._long,
                                    allow_redirects=False, headers=self._auth(node),
                                )
                            )  # fmt: skip
                            if resp.status != 200:
                                body = await read_bounded(resp, MAX_ANSWER_BYTES, f"GET {url}")
                    except TimeoutError:
                        if not deadline.expired():
                            raise  # aiohttp's own (connecting...): transport_errors says which
                        raise self._too_slow(f"GET {url}", 0, loop.time() - start) from None
                    if resp.status != 200:
                        answer = Answer("GET", url, resp.status, body)
                        raise _archive_refused(self._answered(node, answer), node, job_id)
                    self._alive(node)
                    while True:
                        deadline = asyncio.timeout_at(start + self._deadline(received))
                        try:
                            async with deadline:
                                chunk = await resp.content.read(CHUNK)
                        except TimeoutError:
                            if not deadline.expired():
                                raise  # aiohttp's read timeout: no byte for that long
                            elapsed = loop.time() - start
                            raise self._too_slow(f"GET {url}", received, elapsed) from None
                        if not chunk:
                            break
                        received += len(chunk)
                        for piece in reader.feed(chunk):
                            pending.append(piece)
                            buffered += len(piece.data)
                        if buffered >= CHUNK:
                            await asyncio.to_thread(files.write, pending)
                            pending, buffered = [], 0
                            if files.stop is not None:
                                return  # the rest is not worth reading: the frame failed
                    reader.close()
        except ArchiveError as exc:
            await asyncio.to_thread(files.write, pending)  # the members that came whole
            raise FrameMissing(f"GET {url}: broken archive: {exc}") from None
        if pending:
            await asyncio.to_thread(files.write, pending)

    async def delete(self, node: str, job_id: str) -> None:
        await self._request("DELETE", node, f"/jobs/{job_id}")


async def read_bounded(resp: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """The whole body, refused as soon as it is past `limit` bytes (said or counted)."""
    declared = resp.content_length
    if declared is not None and declared > limit:
        raise AnswerTooLarge(f"{what}: the node answered {declared} bytes, over {limit}")
    body = bytearray()
    async for chunk in resp.content.iter_chunked(CHUNK):
        body += chunk
        if len(body) > limit:
            raise AnswerTooLarge(f"{what}: the node answered more than {limit} bytes")
    return bytes(body)


def _archive_refused(answer: Answer, node: str, job_id: str) -> NodeRejected:
    """What a non-200 answer to frames.tar means: 404 is the job (the endpoint is always
    there: node and orchestrator ship together), 409 a frame not done."""
    if answer.status == 404:
        return NodeJobGone(f"{node} no longer knows job {job_id}: {answer.detail()}")
    return answer.refused(FrameMissing if answer.status == 409 else NodeRejected)
