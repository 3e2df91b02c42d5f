"""What a render node's own log says of each job (batch) it ran: when it got a slot, whether it
started a Blender (a bpy worker or a `blender` process) or found one warm, when its first frame
began, and each frame's render seconds.

The node's API says the same (`warm`, `startup_seconds` in GET /jobs/ID), but only while the
job exists, and the orchestrator deletes a batch's job as soon as it has collected the frames;
the log, read after the run, misses none. Nodes write it with `--log-level info --log-format
json` (ProcFarm.start_node(job_log=True)). Times are the log's wall clock, to the millisecond.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field

_RUNNING = re.compile(r"^job (\S+) running on slot \d+$")
_LAUNCH = re.compile(r"^job (\S+) (?:bpy worker|blender) pid \d+ ")
_DONE = re.compile(r"^job (\S+) frame (\d+) done \(([0-9.]+) s\)$")
_END = re.compile(r"^job (\S+) (completed|failed|cancelled)\b")


@dataclass
class NodeJob:
    id: str
    running: float | None = None  # Unix time the job got its slot
    launches: int = 0  # Blender processes (or bpy workers) started for it
    frames: dict[int, tuple[float, float]] = field(default_factory=dict)  # frame: (end, seconds)
    state: str | None = None

    @property
    def warm(self) -> bool:
        """Rendered without starting a Blender: its slot's worker held the scene already."""
        return self.launches == 0 and bool(self.frames)

    @property
    def first_frame_start(self) -> float | None:
        starts = [end - seconds for end, seconds in self.frames.values()]
        return min(starts) if starts else None

    @property
    def startup_seconds(self) -> float | None:
        """From getting its slot to its first frame starting: Blender's start (or a warm
        worker's round trip), the scene load, the node's own steps in between."""
        first = self.first_frame_start
        if first is None or self.running is None:
            return None
        return max(0.0, first - self.running)

    @property
    def render_seconds(self) -> float:
        return sum(seconds for _, seconds in self.frames.values())


def _time(stamp: str) -> float:
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC).timestamp()


def node_jobs(text: str) -> dict[str, NodeJob]:
    """Every job a node's JSON log mentions, in the order they got a slot."""
    jobs: dict[str, NodeJob] = {}
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
            message, when = str(entry["message"]), _time(entry["ts"])
        except (ValueError, KeyError):
            continue
        if match := _RUNNING.match(message):
            jobs.setdefault(match.group(1), NodeJob(match.group(1))).running = when
        elif match := _LAUNCH.match(message):
            jobs.setdefault(match.group(1), NodeJob(match.group(1))).launches += 1
        elif match := _DONE.match(message):
            job = jobs.setdefault(match.group(1), NodeJob(match.group(1)))
            job.frames[int(match.group(2))] = (when, float(match.group(3)))
        elif match := _END.match(message):
            jobs.setdefault(match.group(1), NodeJob(match.group(1))).state = match.group(2)
    return jobs
