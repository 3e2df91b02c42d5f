"""Retry and state rules of the scheduler, as pure functions so they are tested by tables."""

from __future__ import annotations

from collections.abc import Collection

from farm_common.protocol import FrameState, FrameStatus


def blender_matches(version: str | None, wanted: str | None) -> bool:
    """Whether a node's Blender `version` is what a job asked for: `wanted` itself or a release
    of it ("4.2" takes 4.2.0 and 4.2.3, not 4.20). Any node when the job asked for none."""
    if not wanted:
        return True
    if not version:
        return False  # a node whose version is not known yet takes no pinned job
    return version == wanted or version.startswith((wanted + ".", wanted + " "))


def saved_version(text: str | None) -> tuple[int, int] | None:
    """A job's `saved_by` ("5.0") as (5, 0); None when unknown or malformed."""
    major, _, minor = (text or "").partition(".")
    if not (major.isdigit() and minor.isdigit()):
        return None
    return int(major), int(minor)


def node_may_take(
    node: str, avoid: Collection[str], live_nodes: Collection[str], banned: Collection[str]
) -> bool:
    """Whether `node` may take a batch whose frames already failed on the `avoid` nodes.

    Banned nodes (failed too many batches of the job) never do. A node that failed these frames
    waits for a live node that has not, unless there is none left to try.
    """
    if node in banned:
        return False
    if node not in avoid:
        return True
    others = set(live_nodes) - set(avoid) - set(banned)
    return not others


def effective_bans(banned: Collection[str], live_nodes: Collection[str]) -> set[str]:
    """Bans (node failed too many batches of a job) redirect work; they never stall a job.

    When every live node is banned, nobody is: the frames then fail on their own merits
    (three different nodes) and the job ends instead of waiting forever.
    """
    live = set(live_nodes)
    if live and live <= set(banned):
        return set()
    return set(banned)


def frame_started(info: FrameStatus) -> bool:
    """Whether Blender got to a frame, from the node's per-frame status."""
    return info.state in (FrameState.RENDERING, FrameState.DONE) or info.seconds is not None


def failure_counts(info: FrameStatus, batch_started: bool) -> bool:
    """Whether a frame the node reports failed counts as an attempt against the frame.

    When Blender crashes on frame 5 of 5-8, the node fails 6-8 too ("before rendering"): those
    frames are innocent and go back to the queue uncounted, or one poison frame would take its
    batch-mates down with it after 3 nodes. If no frame of the batch started at all (Blender
    could not even load the scene), every frame counts, so a broken scene ends instead of
    looping.
    """
    return frame_started(info) or not batch_started


def eta_seconds(elapsed: float, done: int, remaining: int) -> float | None:
    """Naive ETA from the mean rate so far; None until a frame is done."""
    if done <= 0 or elapsed <= 0:
        return None
    return round(elapsed / done * remaining, 1)


MAX_POLL_SECONDS = 2.0


def poll_base(interval: float, polling: int, max_per_second: float) -> float:
    """The poll interval of a batch that makes progress: `interval`, or longer when the
    `polling` batches together would poll more than `max_per_second` times a second."""
    return max(interval, polling / max_per_second)


def poll_backoff(interval: float, progressed: bool, base: float) -> float:
    """Next status-poll interval: back to `base` on progress, else 1.5x up to 2 s.

    2 s keeps a frame's collection latency small next to any real render time.
    """
    if progressed:
        return base
    return min(max(interval, base) * 1.5, max(base, MAX_POLL_SECONDS))
