"""Persistence: SQLite (jobs, batches, frames, scenes) with numbered migrations, and scene files."""
