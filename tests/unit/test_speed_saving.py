"""The scheduler keeps node speeds in the store; a store that fails must not stop it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from orchestrator.metrics import Metrics
from orchestrator.nodes.client import NodeClient
from orchestrator.scheduling.registry import Registry
from orchestrator.scheduling.scheduler import Scheduler
from orchestrator.store.db import Store
from tests.orch_helpers import fast_settings


class FailingStore(Store):
    def save_learned(self, name: str, value: object, now: float) -> None:
        raise OSError("disk full")


def scheduler_on(store: Store, tmp_path: Path) -> Scheduler:
    settings = fast_settings(tmp_path, [])
    return Scheduler(settings, store, Registry(2.0), NodeClient(None, 1, 1), Metrics())


def test_speeds_are_saved_when_they_moved_at_most_every_ten_seconds(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    scheduler = scheduler_on(store, tmp_path)
    scheduler.speeds.observe_frame("http://a", "s", 2.0)
    asyncio.run(scheduler._save_speeds())
    assert store.load_learned("speeds")["frame"] == [["http://a", "s", 2.0]]
    store.save_learned("speeds", {}, 1.0)
    asyncio.run(scheduler._save_speeds(force=True))  # nothing new measured: not written again
    assert store.load_learned("speeds") == {}
    scheduler.speeds.observe_frame("http://b", "s", 4.0)
    asyncio.run(scheduler._save_speeds())  # moved, but saved less than 10 s ago
    assert store.load_learned("speeds") == {}
    asyncio.run(scheduler._save_speeds(force=True))  # as at stop
    assert len(store.load_learned("speeds")["frame"]) == 2


def test_a_store_that_cannot_save_the_speeds_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler = scheduler_on(FailingStore(tmp_path / "db.sqlite3"), tmp_path)
    scheduler.speeds.observe_startup("http://a", 1.0)
    with caplog.at_level(logging.WARNING, logger="orchestrator.scheduling.scheduler"):
        asyncio.run(scheduler._save_speeds())
    assert "could not save the node speeds: disk full" in caplog.text
