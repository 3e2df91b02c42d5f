"""A node's credentials: what it registers with, what it keeps, what it accepts."""

from __future__ import annotations

import stat
from pathlib import Path

from render_node.credentials import CREDENTIAL_FILE, Credentials


def make(tmp_path: Path, **given: object) -> Credentials:
    values: dict[str, object] = {"token": None, "join_token": None, "join_token_file": None}
    values.update(given)
    return Credentials(keep_in=tmp_path, **values)  # type: ignore[arg-type]


def test_a_joining_node_registers_with_the_join_token_then_with_its_own_credential(
    tmp_path: Path,
) -> None:
    creds = make(tmp_path, token="farm", join_token="join")
    assert creds.bearer() == "join" and creds.joins and creds.checked
    creds.took("mine")
    assert creds.bearer() == "mine"
    kept = tmp_path / CREDENTIAL_FILE
    assert kept.read_text().strip() == "mine"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600  # not Blender's to read
    # After a restart it speaks with the credential it kept, not the join token.
    assert make(tmp_path, join_token="join").bearer() == "mine"


def test_a_refused_credential_is_dropped_and_the_node_joins_again(tmp_path: Path) -> None:
    creds = make(tmp_path, join_token="join")
    creds.took("mine")
    creds.refused(500)  # not about the credential
    assert creds.bearer() == "mine"
    creds.refused(403)
    assert creds.bearer() == "join" and not (tmp_path / CREDENTIAL_FILE).exists()


def test_a_node_without_a_join_token_keeps_what_it_was_given(tmp_path: Path) -> None:
    creds = make(tmp_path, token="farm")
    assert creds.bearer() == "farm" and not creds.joins
    creds.refused(403)  # a wrong FARM_TOKEN: nothing to fall back to
    assert creds.bearer() == "farm"
    assert not make(tmp_path).checked  # an open farm's node is open


def test_the_join_token_file_is_read_when_it_appears(tmp_path: Path) -> None:
    shared = tmp_path / "join" / "token"
    creds = make(tmp_path / "node", join_token_file=shared)
    assert creds.bearer() is None and creds.joins
    shared.parent.mkdir()
    shared.write_text("join-from-file\n")
    assert creds.bearer() == "join-from-file"


def test_the_node_accepts_its_work_key_and_the_farms_token_only(tmp_path: Path) -> None:
    creds = make(tmp_path, token="farm", join_token="join")
    assert creds.accepted() == [creds.work_key, "farm"]
    assert len(creds.work_key) >= 32 and creds.work_key != make(tmp_path).work_key
    joined = make(tmp_path, join_token="join")
    assert joined.accepted() == [joined.work_key]  # not the join token: nodes hold that
