"""The orchestrator's join token: given, or kept in a file it makes once."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from orchestrator.api.authorization import load_join_token


def test_the_join_token_is_made_once_in_its_file_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "join" / "token"
    made = load_join_token(None, path)
    assert made and made.startswith("farm_join_") and len(made) > 40
    assert path.read_text().strip() == made
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_join_token(None, path) == made  # a restart keeps it
    assert load_join_token("given", path) == "given"  # --join-token wins
    assert load_join_token(None, None) is None  # none: no node joins with one


def test_a_join_token_file_that_cannot_be_written_says_what_to_do(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(RuntimeError, match="give the token with --join-token"):
        load_join_token(None, blocked / "token")  # its folder is a file
