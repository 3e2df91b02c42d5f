"""Process groups of Blender: signalling them quietly, and the pid files that let a restarted
node find and kill the groups an earlier run of it left behind (a lesson from Flamenco).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from pathlib import Path

log = logging.getLogger(__name__)


def write_pid_file(path: Path, pgid: int, *, marker: str) -> None:
    """`marker` is a string on the process's command line that proves it is ours later."""
    tmp = path.with_suffix(".tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps({"pgid": pgid, "marker": marker}) + "\n")
        os.replace(tmp, path)  # readers never see half a file


def killpg_quietly(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_leftovers(pid_files: list[Path]) -> list[int]:
    """Kill Blender groups a previous run of this node left behind (its pid files survive it).

    The group is killed only if its leader still runs with this job's output folder on its
    command line, so a recycled pid is never hit. Returns the groups killed.
    """
    killed: list[int] = []
    for pid_file in pid_files:
        try:
            info = json.loads(pid_file.read_text())
            pgid, marker = int(info["pgid"]), str(info["marker"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        cmdline = Path(f"/proc/{pgid}/cmdline")
        try:
            ours = marker.encode() in cmdline.read_bytes()
        except OSError:
            ours = False
        if ours:
            killpg_quietly(pgid, signal.SIGKILL)
            killed.append(pgid)
            log.warning("killed leftover Blender process group %d (%s)", pgid, marker)
        with contextlib.suppress(OSError):
            pid_file.unlink()
    return killed
