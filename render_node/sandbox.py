"""Where Blender may write: its job's folder, nowhere else.

Two layers. The scene guard (`blender.scene_guard`, run inside Blender before any frame)
points every compositor File Output node and every cache written while rendering into the
job's folder. Below it, the sandbox holds Blender whatever the .blend does:

- `bwrap`: bubblewrap, in unprivileged user namespaces. The whole file system is read-only, the
  node's data folder (and each `--sandbox-hide` folder) is replaced by an empty one, the job's
  own folders are the only writable places, and there is no network and no capability.
- `user`: Blender runs as another, unprivileged user (`--sandbox-user`) that owns only the
  job's own folders. For containers, whose seccomp profile forbids user namespaces; the node
  runs as root for it.
- `none`: the guard alone, said loudly at start-up and in GET /info.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import pwd
import resource
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

SandboxChoice = Literal["auto", "bwrap", "user", "none"]
PROBE_SECONDS = 10.0
# Device nodes a GPU render needs; the rest of /dev is bubblewrap's minimal one.
GPU_DEVICES = ("/dev/dri", "/dev/kfd", "/dev/nvidia*")


class SandboxUnavailable(RuntimeError):
    """The sandbox asked for cannot run here; the message says why and what to do."""


@dataclass(frozen=True)
class Sandbox:
    kind: Literal["bwrap", "user", "none"]
    bwrap: str | None = None
    hide: tuple[Path, ...] = ()  # folders Blender must not see at all (bwrap)
    user: str | None = None
    uid: int | None = None
    gid: int | None = None
    home: str | None = None

    def describe(self) -> str:
        return f"user {self.user}" if self.kind == "user" else self.kind

    def command(
        self, argv: Sequence[str], *, read: Sequence[Path], write: Sequence[Path]
    ) -> list[str]:
        """`argv` run inside the sandbox: `read` stays readable (even inside a hidden folder),
        `write` is the only writable place."""
        if self.kind != "bwrap":
            return list(argv)
        assert self.bwrap is not None
        args = [self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev"]
        for pattern in GPU_DEVICES:
            for device in sorted(glob.glob(pattern)):
                args += ["--dev-bind", device, device]
        # /tmp stays as it is, read-only like the rest: Blender's temp files go to the job
        # (TMPDIR), and Blender itself may live there (a test's checkout, an unpacked build).
        args += ["--proc", "/proc"]
        hidden = [str(folder) for folder in outermost(self.hide) if folder.exists()]
        for folder in hidden:
            args += ["--tmpfs", folder]  # empty in there; made read-only below
        for path in read:
            args += ["--ro-bind", str(path), str(path)]
        for path in write:
            args += ["--bind", str(path), str(path)]
        for folder in hidden:  # not recursive: the job's folders bound inside stay writable
            args += ["--remount-ro", folder]
        args += ["--unshare-all", "--die-with-parent", "--cap-drop", "ALL", "--"]
        return args + list(argv)

    def prepare(self, folders: Sequence[Path]) -> None:
        """Hand the job's writable folders to the sandbox's user (user mode)."""
        if self.kind == "user":
            assert self.uid is not None and self.gid is not None
            for folder in folders:
                os.chown(folder, self.uid, self.gid)
                folder.chmod(0o700)

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        if self.kind == "user" and self.user and self.home:
            env.update(HOME=self.home, USER=self.user, LOGNAME=self.user)
        return env

    def preexec(self, memory_limit_bytes: int | None) -> Callable[[], None] | None:
        """What runs in the child between fork and exec: the memory limit, then (user mode)
        dropping to the sandbox's user for good."""
        uid, gid = (self.uid, self.gid) if self.kind == "user" else (None, None)
        if memory_limit_bytes is None and uid is None:
            return None

        def apply() -> None:  # keep it tiny: it runs in a forked child
            if memory_limit_bytes is not None:
                resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
            if uid is not None and gid is not None:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)

        return apply

    def returncode(self, code: int | None) -> int | None:
        """bubblewrap exits 128+N when Blender dies of signal N; say it as Python does."""
        if self.kind == "bwrap" and code is not None and 128 < code < 128 + 65:
            return -(code - 128)
        return code


def outermost(folders: Sequence[Path]) -> list[Path]:
    """`folders` less those inside another of them (hiding the outer one hides them too)."""
    unique = sorted(set(folders))
    return [f for f in unique if not any(f != o and f.is_relative_to(o) for o in unique)]


def choose_sandbox(
    choice: SandboxChoice, *, user: str, hide: Sequence[Path], bwrap: str = "bwrap"
) -> Sandbox:
    """The sandbox `choice` names; `auto`: bwrap if it runs here, else `user` if the node is
    root and the user exists, else none (with a warning)."""
    if choice == "none":
        return Sandbox("none")
    problems: list[str] = []
    if choice in ("auto", "bwrap"):
        found, problem = probe_bwrap(bwrap)
        if found is not None:
            return Sandbox("bwrap", bwrap=found, hide=tuple(p.resolve() for p in hide))
        problems.append(problem)
        if choice == "bwrap":
            raise SandboxUnavailable(f"--sandbox bwrap: {problem}")
    sandbox, problem = user_sandbox(user)
    if sandbox is not None:
        return sandbox
    problems.append(problem)
    if choice == "user":
        raise SandboxUnavailable(f"--sandbox user: {problem}")
    log.warning(
        "Blender runs WITHOUT a sandbox (%s): a crafted .blend can write wherever this node's "
        "user can; install bubblewrap, or run the node as root with a --sandbox-user",
        "; ".join(problems),
    )
    return Sandbox("none")


def probe_bwrap(bwrap: str) -> tuple[str | None, str]:
    """(bwrap's path, "") when it runs a command in new namespaces here, else (None, why)."""
    path = shutil.which(bwrap)
    if path is None:
        return None, f"{bwrap} is not installed (Debian: apt-get install bubblewrap)"
    probe = [path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    probe += ["--unshare-all", "--die-with-parent", "--cap-drop", "ALL", "--", "true"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=PROBE_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{path} did not run: {exc}"
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip()[:200]
        return None, (
            f"{path} cannot create namespaces here ({said or done.returncode}); in a "
            "container, user namespaces are usually forbidden: use --sandbox user"
        )
    return path, ""


def user_sandbox(name: str) -> tuple[Sandbox | None, str]:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None, f"there is no user {name!r} to run Blender as (--sandbox-user)"
    if entry.pw_uid == 0:
        return None, f"--sandbox-user {name} is root: name an unprivileged user"
    if os.geteuid() != 0:
        return None, "only a node running as root can run Blender as another user"
    home = entry.pw_dir if os.path.isdir(entry.pw_dir) else "/nonexistent"
    return Sandbox("user", user=name, uid=entry.pw_uid, gid=entry.pw_gid, home=home), ""


def private_folder(path: Path) -> None:
    """A folder others cannot list (its members are reached by name only)."""
    path.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        path.chmod(0o711)
