"""The add-on's running state, made at register and dropped at unregister: the job board,
its poller (not in background mode: there is no panel to keep fresh), the task under way."""

from __future__ import annotations

from dataclasses import dataclass, field

from .board import JobBoard, Poller
from .worker import Task


@dataclass
class Session:
    board: JobBoard = field(default_factory=JobBoard)
    poller: Poller | None = None
    submitting: Task | None = None
    downloading: Task | None = None
    last_message: str = ""  # the last submission's or download's outcome, for the panel

    def follow(self, job_id: str | None) -> None:
        """Show this job in the panel, asked for at once."""
        self.board.follow(job_id)
        if self.poller is not None:
            self.poller.poke()


_session: Session | None = None


def session() -> Session:
    global _session
    if _session is None:
        _session = Session()
    return _session


def start(background: bool) -> Session:
    current = session()
    if not background and current.poller is None:
        current.poller = Poller(current.board)
        current.poller.start()
    return current


def stop() -> None:
    global _session
    if _session is not None and _session.poller is not None:
        _session.poller.stop()
    _session = None
