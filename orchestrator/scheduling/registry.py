"""Node registry: static `--node` URLs and nodes that register over HTTP, and who is lost.

A node is addressed by its own registered URL, never by a load-balanced service name. Liveness
is "answered or heartbeated within `timeout` seconds" on an injectable clock, so loss detection
is tested without sleeping. A lost node that answers again is simply healthy again.

A registering node says which process it is (`instance`, new at every start). When the same
process registers under another URL (in a Swarm the first heartbeat can go out under the
container's hostname, before the orchestrator's name resolves and the node knows its IP), the
old entry is `moved`: it takes no new batches, finishes those it has, and is then forgotten,
so one node never shows, or is fed, twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Clock = Callable[[], float]
log = logging.getLogger(__name__)


@dataclass
class Node:
    url: str
    static: bool = False
    name: str = ""
    slots: int = 1
    busy: int = 0
    version: str | None = None
    blender_version: str | None = None
    cpu_count: int | None = None
    last_seen: float | None = None
    current_batches: set[str] = field(default_factory=set)
    frames_rendered: int = 0
    instance: str | None = None
    moved_to: str | None = None
    sandbox: str | None = None  # as the node says: bwrap, user NAME, none
    engine: str | None = None  # blender (a binary per batch) or bpy (warm slots)
    devices: list[str] = field(default_factory=list)  # each slot's, as the node says
    device: str | None = None  # cpu or gpu
    warm: set[str] = field(default_factory=set)  # jobs whose scene a slot holds loaded
    tags: set[str] = field(default_factory=set)  # its pools (render-node --tags)
    active_hours: str | None = None  # render-node --active-hours, in its local time
    off_hours: bool = False  # outside them now: drains by itself
    # What the node asks its orchestrator to show (render_node/credentials.py): never listed.
    work_key: str | None = field(default=None, repr=False)


def normalize_url(url: str) -> str:
    return url.strip().rstrip("/")


class BadNodeUrl(ValueError):
    """A registration URL the orchestrator could not (or must not) call; says why."""


def check_node_url(url: str) -> str:
    """A node's base URL as registered: http(s)://host[:port][/prefix], nothing else."""
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise BadNodeUrl(f"node url {url[:100]!r} contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadNodeUrl(f"node url {url[:100]!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadNodeUrl(f"node url {url[:100]!r} must be http(s)://host:port")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise BadNodeUrl(f"node url {url[:100]!r} must have no user, query or fragment")
    if port == 0:
        raise BadNodeUrl(f"node url {url[:100]!r} has port 0")
    return normalize_url(url)


# A render node runs at most this many Blenders at once (render_node/settings.py): a node that
# claims more is taken at this word, not at its own (each slot is a worker here).
MAX_NODE_SLOTS = 64


class RegistryFull(RuntimeError):
    """No room for another node; the message says why and what to do."""


class Registry:
    """Updated by the API's thread (registrations) and the engine's (answers): readers take a
    copy of the node list (`nodes()`, one atomic step), never iterate the dict itself.

    Registrations come from anyone with the token: at most `max_nodes` entries are kept, and a
    registered node lost for `forget_after` seconds (with no batch left) is forgotten.
    """

    def __init__(
        self,
        timeout: float,
        clock: Clock = time.monotonic,
        *,
        max_nodes: int = 1000,
        forget_after: float = 3600.0,
    ) -> None:
        self.timeout = timeout
        self.clock = clock
        self.max_nodes = max_nodes
        self.forget_after = forget_after
        self._nodes: dict[str, Node] = {}
        # url -> "draining" (finishes its batches, takes no new ones) or "paused" (its batches
        # go back now): set by an operator, kept for a node that has not registered yet.
        self.admin: dict[str, str] = {}

    def add_static(self, url: str) -> Node:
        url = normalize_url(url)
        node = self._nodes.setdefault(url, Node(url=url, static=True, name=url))
        node.static = True
        return node

    def update(self, url: str, info: dict[str, Any]) -> Node:
        """Record a heartbeat or a /info answer: the node is alive now, with these facts."""
        url = normalize_url(url)
        node = self._nodes.get(url)
        if node is None:
            if len(self._nodes) >= self.max_nodes:
                self.forget_lost(self.timeout)  # make room from nodes gone for a while
            if len(self._nodes) >= self.max_nodes:
                raise RegistryFull(
                    f"this orchestrator already knows {len(self._nodes)} nodes, its limit "
                    "(--max-nodes): raise it, or wait until lost nodes are forgotten"
                )
            node = self._nodes.setdefault(url, Node(url=url, name=url))
        if info.get("slots"):
            claimed = max(1, int(info["slots"]))
            if claimed > MAX_NODE_SLOTS and node.slots != MAX_NODE_SLOTS:
                log.warning("node %s claims %d slots; taken as %d, a node's most",
                            url, claimed, MAX_NODE_SLOTS)  # fmt: skip
            node.slots = min(claimed, MAX_NODE_SLOTS)
        if "busy" in info:
            node.busy = int(info.get("busy") or 0)
        for key in ("version", "blender_version", "cpu_count", "sandbox", "engine", "device"):
            if info.get(key) is not None:
                setattr(node, key, info[key])
        if isinstance(info.get("devices"), list):
            node.devices = [str(d) for d in info["devices"]]
        if isinstance(info.get("warm"), list):
            node.warm = {str(j) for j in info["warm"]}
        if isinstance(info.get("tags"), list):
            node.tags = {str(t) for t in info["tags"]}
        if "off_hours" in info:
            node.active_hours = info.get("active_hours")
            node.off_hours = bool(info["off_hours"])
        if info.get("work_key"):
            node.work_key = str(info["work_key"])
        if info.get("name"):
            node.name = str(info["name"])
        if info.get("instance"):
            node.instance = str(info["instance"])
            node.moved_to = None
            for other in self.nodes():
                if other is not node and not other.static and other.instance == node.instance:
                    other.moved_to = url
        node.last_seen = self.clock()
        return node

    def forget_moved(self) -> list[Node]:
        """Drop the entries whose node now registers under another URL and that have no batch
        left to finish there; returns them. Called by the scheduler, which owns the batches."""
        gone = [n for n in self.nodes() if n.moved_to and not n.current_batches]
        for node in gone:
            self._nodes.pop(node.url, None)
        return gone

    def forget_lost(self, after: float | None = None) -> list[Node]:
        """Drop the registered (not static) nodes lost for longer than `after` seconds
        (default `forget_after`) with no batch left; returns them."""
        limit = self.forget_after if after is None else after
        now = self.clock()
        gone = [
            n
            for n in self.nodes()
            if not n.static
            and not n.current_batches
            and (n.last_seen is None or now - n.last_seen > self.timeout + limit)
        ]
        for node in gone:
            self._nodes.pop(node.url, None)
        return gone

    def key_of(self, url: str) -> str | None:
        """The key a node registered with, which it checks on every request it is sent."""
        node = self._nodes.get(url)
        return node.work_key if node is not None else None

    def seen(self, url: str) -> None:
        node = self._nodes.get(url)
        if node is not None:
            node.last_seen = self.clock()

    def get(self, url: str) -> Node | None:
        return self._nodes.get(url)

    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    def is_lost(self, url: str) -> bool:
        node = self._nodes.get(url)
        if node is None or node.last_seen is None:
            return True
        return self.clock() - node.last_seen > self.timeout

    def takes_work(self, url: str) -> bool:
        """Whether the node's slots take new batches: answering, not moved, not drained or
        paused by an operator."""
        node = self._nodes.get(url)
        return (
            node is not None
            and not node.moved_to
            and not self.is_lost(url)
            and url not in self.admin
            and not node.off_hours
        )

    def working(self) -> list[Node]:
        """The nodes whose slots take new batches (`takes_work`)."""
        return [n for n in self.nodes() if self.takes_work(n.url)]

    def gone(self, url: str) -> None:
        """The node said it is going away: lost now, not after the loss timeout."""
        node = self._nodes.get(url)
        if node is not None:
            node.last_seen = None

    def is_paused(self, url: str) -> bool:
        return self.admin.get(url) == "paused"

    def state(self, node: Node) -> str:
        if self.is_lost(node.url) or (node.moved_to and not node.current_batches):
            return "lost"  # a moved entry with nothing left to finish: forgotten next
        if node.url in self.admin:
            return self.admin[node.url]
        if node.off_hours:
            return "draining"  # outside its active hours: finishes its batches, takes none
        if len(node.current_batches) >= node.slots or node.busy >= node.slots:
            return "busy"
        return "healthy"

    def live(self) -> list[Node]:
        """The nodes that take batches: answering, and not moved to another URL."""
        return [n for n in self.nodes() if not n.moved_to and not self.is_lost(n.url)]

    def live_urls(self) -> set[str]:
        return {n.url for n in self.live()}

    def total_slots(self) -> int:
        return sum(n.slots for n in self.live())

    def static_urls(self) -> list[str]:
        return [n.url for n in self.nodes() if n.static]

    def blender_versions(self) -> set[str]:
        return {n.blender_version for n in self.live() if n.blender_version}


# An operator's actions on a node and the state each leaves it in; "leave" is the node's own
# word that it is going away (render-node on SIGTERM): it is lost at once, its batches go back.
NODE_ACTIONS: dict[str, str | None] = {"drain": "draining", "pause": "paused", "resume": None}
ALL_NODE_ACTIONS = (*NODE_ACTIONS, "leave")


def node_view(node: Node, registry: Registry, wall_now: float) -> dict[str, Any]:
    """A node as `GET /nodes` and the dashboard show it."""
    ago = None if node.last_seen is None else max(0.0, registry.clock() - node.last_seen)
    return {
        "url": node.url,
        "name": node.name,
        "state": registry.state(node),
        "slots": node.slots,
        "busy": max(node.busy, len(node.current_batches)),
        "current_batch": sorted(node.current_batches)[0] if node.current_batches else None,
        "current_batches": sorted(node.current_batches),
        "frames_rendered": node.frames_rendered,
        "last_seen": None if ago is None else round(wall_now - ago, 3),
        "last_seen_seconds_ago": None if ago is None else round(ago, 1),
        "blender_version": node.blender_version,
        "version": node.version,
        "cpu_count": node.cpu_count,
        "static": node.static,
        "sandbox": node.sandbox,
        "engine": node.engine,
        "devices": node.devices,
        "device": node.device,
        "tags": sorted(node.tags),
        "active_hours": node.active_hours,
        "off_hours": node.off_hours,
    }
