"""Work off Blender's main thread (packing, uploads, downloads): a thread whose progress the
main thread reads without waiting. The worker never touches bpy; the operator that started it
reads its state on a timer and reports the result."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from .farm_api import FarmError


class Progress:
    """What a worker says it is doing, and how far (0..1, or None when unknown)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._text = ""
        self._fraction: float | None = None

    def say(self, text: str, fraction: float | None = None) -> None:
        with self._lock:
            self._text, self._fraction = text, fraction

    def read(self) -> tuple[str, float | None]:
        with self._lock:
            return self._text, self._fraction


class Task:
    """`work(progress)` run in a daemon thread; `result` or `error` (a message) once `done`."""

    def __init__(self, name: str, work: Callable[[Progress], Any]) -> None:
        self.progress = Progress()
        self.result: Any = None
        self.error: str | None = None
        self.failure: FarmError | None = None  # the error as raised (MissingAssets lists files)
        self._work = work
        self._thread = threading.Thread(target=self._run, name=f"farm-{name}", daemon=True)

    def start(self) -> Task:
        self._thread.start()
        return self

    def run_here(self) -> Task:
        """In background mode there is no UI to keep alive: the work runs on the caller's
        thread, and the operator returns with its result."""
        self._run()
        return self

    @property
    def done(self) -> bool:
        return not self._thread.is_alive() and (self.result is not None or self.error is not None)

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self.result = self._work(self.progress)
            if self.result is None:
                self.result = True
        except FarmError as exc:
            self.error, self.failure = str(exc), exc
        except Exception as exc:  # a bug: the artist sees it, the console gets the trace
            traceback.print_exc()
            self.error = f"the add-on failed: {type(exc).__name__}: {exc}"
