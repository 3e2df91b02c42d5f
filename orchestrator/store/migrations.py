"""The SQLite schema as numbered migrations; `PRAGMA user_version` says which have run.

A data folder from before numbered migrations has user_version 0 and some of the columns the
later steps add, so those steps add a column only where it is missing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from farm_common.frames import compact_frames

TABLES = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, scene TEXT NOT NULL, scene_sha TEXT NOT NULL,
    frames_spec TEXT NOT NULL, format TEXT NOT NULL, priority INTEGER NOT NULL,
    batch_size INTEGER NOT NULL, video INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL,
    created REAL NOT NULL, started REAL, finished REAL, error TEXT,
    total INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    rendering INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS frames (
    job TEXT NOT NULL, frame INTEGER NOT NULL, idx INTEGER NOT NULL, state TEXT NOT NULL,
    batch TEXT, node TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    nodes_failed TEXT NOT NULL DEFAULT '[]', error TEXT, seconds REAL,
    PRIMARY KEY (job, frame));
CREATE INDEX IF NOT EXISTS frames_state ON frames (job, state);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, job TEXT NOT NULL, seq INTEGER NOT NULL, frames TEXT NOT NULL,
    avoid TEXT NOT NULL DEFAULT '[]', node TEXT, node_job_id TEXT, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, done_count INTEGER NOT NULL DEFAULT 0,
    started REAL, finished REAL);
CREATE INDEX IF NOT EXISTS batches_job ON batches (job, seq);
CREATE TABLE IF NOT EXISTS scenes (
    sha TEXT PRIMARY KEY, path TEXT NOT NULL, name TEXT, size INTEGER, created REAL);
CREATE TABLE IF NOT EXISTS learned (
    name TEXT PRIMARY KEY, value TEXT NOT NULL, updated REAL NOT NULL);
"""


def _create_tables(db: sqlite3.Connection) -> None:
    for statement in TABLES.split(";"):
        if statement.strip():
            db.execute(statement)


def _add_column(table: str, column: str, declaration: str) -> Callable[[sqlite3.Connection], None]:
    def migrate(db: sqlite3.Connection) -> None:
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in columns:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    return migrate


def _create(statement: str) -> Callable[[sqlite3.Connection], None]:
    def migrate(db: sqlite3.Connection) -> None:
        db.execute(statement)

    return migrate


def _batch_specs(db: sqlite3.Connection) -> None:
    """Status reads send a batch's `spec` as it is: fill it in for batches from before it."""
    _add_column("batches", "spec", "TEXT")(db)
    old = db.execute("SELECT id, frames FROM batches WHERE spec IS NULL").fetchall()
    db.executemany(
        "UPDATE batches SET spec=? WHERE id=?",
        ((compact_frames(json.loads(frames)), batch) for batch, frames in old),
    )


# In order; the schema's version is the number of migrations run. Append, never edit.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _create_tables,
    _add_column("jobs", "adaptive", "INTEGER NOT NULL DEFAULT 0"),
    _add_column("jobs", "blender_version", "TEXT"),
    _batch_specs,
    _add_column("jobs", "manifest", "TEXT"),
    _add_column("jobs", "format_given", "INTEGER NOT NULL DEFAULT 1"),
    _add_column("jobs", "allow_missing", "INTEGER NOT NULL DEFAULT 0"),
    _add_column("jobs", "assets", "TEXT"),
    _add_column("jobs", "device", "TEXT"),
    _add_column("jobs", "saved_by", "TEXT"),
    _add_column("jobs", "tiles", "INTEGER NOT NULL DEFAULT 1"),
    _add_column("jobs", "tile_margin", "INTEGER NOT NULL DEFAULT 0"),
    _add_column("jobs", "sample_parts", "INTEGER NOT NULL DEFAULT 1"),
    _add_column("jobs", "samples", "INTEGER"),
    _add_column("jobs", "tags", "TEXT"),
    _add_column("jobs", "after", "TEXT"),
    _create(
        "CREATE TABLE IF NOT EXISTS requeues (job TEXT NOT NULL, at REAL NOT NULL,"
        " asked TEXT NOT NULL, frames TEXT NOT NULL, count INTEGER NOT NULL)"
    ),
    _add_column("jobs", "kind", "TEXT NOT NULL DEFAULT 'render'"),
    _add_column("jobs", "source", "TEXT"),
    _add_column("jobs", "fps", "INTEGER"),
    _add_column("jobs", "submitted_by", "TEXT"),
    # Tokens (orchestrator/access.py): only a hash of each is kept; `url` binds a node's own
    # credential to the node it was issued to.
    _create(
        "CREATE TABLE IF NOT EXISTS tokens (name TEXT PRIMARY KEY, role TEXT NOT NULL,"
        " hash TEXT NOT NULL UNIQUE, url TEXT, created REAL NOT NULL, created_by TEXT,"
        " revoked REAL, last_used REAL)"
    ),
    _create(
        "CREATE TABLE IF NOT EXISTS audit (at REAL NOT NULL, who TEXT NOT NULL,"
        " role TEXT NOT NULL, action TEXT NOT NULL, target TEXT, status INTEGER NOT NULL,"
        " detail TEXT)"
    ),
]


def migrate(db: sqlite3.Connection) -> int:
    """Run the migrations `db` has not had, in one transaction; returns the schema version.

    `db` is in autocommit mode (isolation_level=None); BEGIN IMMEDIATE keeps the other
    process of the orchestrator from migrating at the same time.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"the database is at schema version {version}, newer than this orchestrator's "
                f"{len(MIGRATIONS)}: run the newer orchestrator, or restore a backup"
            )
        for step in MIGRATIONS[version:]:
            step(db)
        db.execute(f"PRAGMA user_version={len(MIGRATIONS)}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)
