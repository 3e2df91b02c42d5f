"""What this node proves itself with to its orchestrator, and what it asks of it in return.

Registering with a join token (role node), the node gets a credential of its own, good for its
URL only; it keeps it in its data folder (readable by root alone: not by Blender) and heartbeats
with it from then on, even after a restart. Each heartbeat also carries the node's work key,
which it makes at start: the orchestrator sends it back as its bearer token, so the node takes
work only from the orchestrator it registered with. A node with the farm's token (FARM_TOKEN)
accepts that too, as before roles.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from farm_common.auth import write_secret

log = logging.getLogger(__name__)

CREDENTIAL_FILE = "orchestrator-credential"


class Credentials:
    def __init__(
        self,
        *,
        token: str | None,
        join_token: str | None,
        join_token_file: Path | None,
        keep_in: Path,
    ) -> None:
        self.token = token
        self.join_token = join_token
        self.join_token_file = join_token_file
        self.kept = keep_in / CREDENTIAL_FILE
        self.work_key = secrets.token_urlsafe(32)
        self.credential = self._read(self.kept)
        self._said_waiting = False

    @property
    def joins(self) -> bool:
        """Whether this node joins with a join token (rather than the farm's token)."""
        return bool(self.join_token or self.join_token_file)

    @property
    def checked(self) -> bool:
        """Whether requests to this node must carry a token (an open farm's nodes are open)."""
        return bool(self.token or self.joins)

    def accepted(self) -> list[str]:
        """The bearer tokens this node's API takes: its work key, and the farm's token."""
        return [self.work_key, *([self.token] if self.token else [])]

    def bearer(self) -> str | None:
        """What to register with: its own credential, else the join token, else the farm's."""
        if self.credential:
            return self.credential
        if self.join_token:
            return self.join_token
        if self.join_token_file is not None:
            joined = self._read(self.join_token_file)
            if joined is None and not self._said_waiting:
                log.info("waiting for the join token in %s", self.join_token_file)
                self._said_waiting = True
            return joined
        return self.token

    def took(self, credential: str | None) -> None:
        """The orchestrator's answer: a credential of this node's own, kept for restarts."""
        if not credential or credential == self.credential:
            return
        self.credential = credential
        try:
            write_secret(self.kept, credential)
        except OSError as exc:  # it still works until the node restarts
            log.warning("could not keep this node's credential in %s: %s", self.kept, exc)
        log.info("joined the farm: this node has a credential of its own now")

    def refused(self, status: int) -> None:
        """The orchestrator refused the credential (revoked, or another farm's): join again."""
        if status in (401, 403) and self.credential and self.joins:
            log.warning(
                "the orchestrator refuses this node's credential (HTTP %d): joining again "
                "with the join token",
                status,
            )
            self.credential = None
            self.kept.unlink(missing_ok=True)

    @staticmethod
    def _read(path: Path) -> str | None:
        try:
            text = path.read_text().strip()
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            return None
        return text or None
