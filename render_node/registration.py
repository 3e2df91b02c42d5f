"""Heartbeat to an orchestrator: POST /nodes/register every few seconds with what this node is.

The advertised URL is this node's own address (never a load-balanced service name), so that
status requests reach the replica that took the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from farm_common.auth import auth_headers
from farm_common.protocol import Registered
from render_node.credentials import Credentials

log = logging.getLogger(__name__)

REGISTER_TIMEOUT = 5.0


def local_ip_towards(url: str) -> str:
    """The local address of the interface that routes to `url`'s host (no packet is sent)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, _, _, _, sockaddr = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(sockaddr)
            return str(sock.getsockname()[0])
    except OSError:
        return socket.gethostname()


def default_advertise_url(
    host: str, port: int, orchestrator: str | None, scheme: str = "http"
) -> str:
    if orchestrator:
        address = local_ip_towards(orchestrator)
    elif host in ("0.0.0.0", "::", ""):
        address = socket.gethostname()
    else:
        address = host
    if ":" in address:  # IPv6 literal
        address = f"[{address}]"
    return f"{scheme}://{address}:{port}"


# The interval an orchestrator may ask for: fast enough to matter, never a busy loop.
HEARTBEAT_BOUNDS = (0.1, 60.0)


def credential_given(answer: httpx.Response) -> str | None:
    """The node's own credential, in the answer to its first heartbeat with a join token."""
    try:
        return Registered.model_validate_json(answer.content).credential
    except ValidationError:
        return None


def interval_asked(answer: httpx.Response, current: float) -> float:
    """The heartbeat interval the orchestrator's answer asks for (it declares a node lost after
    a few of them missed), within HEARTBEAT_BOUNDS; `current` when the answer says none."""
    try:
        asked = Registered.model_validate_json(answer.content).heartbeat_seconds
    except ValidationError:
        return current
    low, high = HEARTBEAT_BOUNDS
    return min(max(asked, low), high)


async def heartbeat_loop(
    orchestrator: str,
    payload: Callable[[], Awaitable[dict[str, Any]]],
    *,
    credentials: Credentials,
    interval: float,
    verify: ssl.SSLContext | bool = True,
    client: httpx.AsyncClient | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Register forever, every `interval` seconds until the orchestrator says how often; says
    once when the orchestrator is unreachable and once when it is back."""
    url = orchestrator.rstrip("/") + "/nodes/register"
    own = client is None
    client = client or httpx.AsyncClient(timeout=REGISTER_TIMEOUT, verify=verify)
    reachable: bool | None = None
    try:
        while True:
            problem: str | None = None
            try:
                body = {**await payload(), "work_key": credentials.work_key}
                bearer = credentials.bearer()
                if bearer is None and credentials.joins:
                    problem = "no join token yet"  # its file is not there yet
                    response = None
                else:
                    response = await client.post(
                        url, json=body, headers=auth_headers(bearer), timeout=REGISTER_TIMEOUT
                    )
                if response is None:
                    pass
                elif response.status_code >= 400:
                    problem = f"HTTP {response.status_code}: {response.text[:200]}"
                    credentials.refused(response.status_code)
                else:
                    credentials.took(credential_given(response))
                    asked = interval_asked(response, interval)
                    if asked != interval:
                        log.info("heartbeat every %g s, as orchestrator %s asks", asked, url)
                        interval = asked
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem is None and reachable is not True:
                log.info("registered with orchestrator %s as %s", orchestrator, body.get("url"))
            elif problem is not None and reachable is not False:
                log.warning("cannot register with orchestrator %s (%s); retrying", url, problem)
            reachable = problem is None
            await sleep(interval)
    finally:
        if own:
            with contextlib.suppress(Exception):
                await asyncio.shield(client.aclose())


LEAVE_TIMEOUT = 2.0  # seconds a stopping node gives the orchestrator to hear it is leaving


async def say_leaving(
    orchestrator: str,
    url: str,
    *,
    token: str | None,
    verify: ssl.SSLContext | bool = True,
    client: httpx.AsyncClient | None = None,
) -> bool:
    """Tell the orchestrator this node is going away, so its batches go back to the queue now
    rather than after the loss timeout; False when it could not be told (it then finds out)."""
    target = orchestrator.rstrip("/") + "/nodes/leave"
    own = client is None
    client = client or httpx.AsyncClient(timeout=LEAVE_TIMEOUT, verify=verify)
    try:
        response = await client.post(
            target, json={"url": url}, headers=auth_headers(token), timeout=LEAVE_TIMEOUT
        )
    except httpx.HTTPError as exc:
        log.warning("could not tell orchestrator %s this node is leaving: %s", orchestrator, exc)
        return False
    finally:
        if own:
            await client.aclose()
    if response.status_code >= 400:
        log.warning("orchestrator %s did not take this node's leave: HTTP %d %s",
                    orchestrator, response.status_code, response.text[:200])  # fmt: skip
        return False
    log.info("told orchestrator %s this node is leaving: its batches go back", orchestrator)
    return True
