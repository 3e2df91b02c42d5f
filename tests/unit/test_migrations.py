"""Numbered migrations: a new database gets them all, an old one the missing ones, once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orchestrator.store.migrations import MIGRATIONS, migrate


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def test_a_new_database_gets_every_migration_and_its_version(tmp_path: Path) -> None:
    db = connect(tmp_path / "farm.sqlite3")
    assert migrate(db) == len(MIGRATIONS)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert {"adaptive", "blender_version"} <= columns(db, "jobs")
    assert "spec" in columns(db, "batches")


def test_a_database_from_before_numbered_migrations_keeps_its_rows(tmp_path: Path) -> None:
    db = connect(tmp_path / "farm.sqlite3")
    MIGRATIONS[0](db)  # the first release's tables, user_version still 0
    db.execute(
        "INSERT INTO batches (id, job, seq, frames, state) VALUES ('b1', 'j1', 0, '[1,2,3,7]',"
        " 'done')"
    )
    migrate(db)
    assert db.execute("SELECT spec FROM batches WHERE id='b1'").fetchone()[0] == "1-3,7"


def test_running_the_migrations_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "farm.sqlite3"
    migrate(connect(path))
    db = connect(path)
    db.execute("INSERT INTO batches (id, job, seq, frames, state) VALUES ('b', 'j', 0, '[1]', 'q')")
    migrate(db)
    assert db.execute("SELECT spec FROM batches").fetchone()[0] is None  # not refilled


def test_a_database_from_a_newer_orchestrator_is_refused(tmp_path: Path) -> None:
    db = connect(tmp_path / "farm.sqlite3")
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer than this orchestrator"):
        migrate(db)
