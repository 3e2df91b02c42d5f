"""Tokens and the audit log, in the orchestrator's SQLite: a token is kept as the SHA-256 of its
text only (tokens are 256 random bits: a slow hash adds nothing), and the audit log is only
ever appended to."""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from typing import Any

from orchestrator.store.tx import Tx

AUDIT_LISTED = 1000


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenRow:
    name: str
    role: str
    url: str | None  # a node's own credential: the node it was issued to
    created: float
    created_by: str | None
    revoked: float | None


class TokenQueries:
    """Mixed into the Store: its connection and transactions."""

    _db: sqlite3.Connection

    def _tx(self) -> Tx:
        raise NotImplementedError  # the Store's

    def add_token(
        self,
        name: str,
        role: str,
        digest: str,
        now: float,
        *,
        created_by: str | None,
        url: str | None = None,
        replace: bool = False,
    ) -> bool:
        """Keep a new token's hash under `name`; False when a token of that name is in use
        (a revoked one is replaced). `replace`: replace it anyway (a node's new credential)."""
        with self._tx() as db:
            row = db.execute("SELECT revoked FROM tokens WHERE name=?", (name,)).fetchone()
            if row is not None and row["revoked"] is None and not replace:
                return False
            db.execute("DELETE FROM tokens WHERE name=?", (name,))
            db.execute(
                "INSERT INTO tokens (name, role, hash, url, created, created_by)"
                " VALUES (?,?,?,?,?,?)",
                (name, role, digest, url, now, created_by),
            )
            return True

    def token_by_hash(self, digest: str) -> TokenRow | None:
        row = self._db.execute(
            "SELECT name, role, url, created, created_by, revoked FROM tokens WHERE hash=?",
            (digest,),
        ).fetchone()
        return TokenRow(**dict(row)) if row else None

    def list_tokens(self) -> list[TokenRow]:
        rows = self._db.execute(
            "SELECT name, role, url, created, created_by, revoked FROM tokens ORDER BY created"
        )
        return [TokenRow(**dict(r)) for r in rows]

    def revoke_token(self, name: str, now: float) -> TokenRow | None:
        """Revoke the token `name` from now on; its row as it was, None when there is none."""
        with self._tx() as db:
            row = db.execute(
                "SELECT name, role, url, created, created_by, revoked FROM tokens WHERE name=?",
                (name,),
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE tokens SET revoked=? WHERE name=? AND revoked IS NULL", (now, name))
            return TokenRow(**dict(row))

    def add_audit(
        self,
        at: float,
        who: str,
        role: str,
        action: str,
        target: str | None,
        status: int,
        detail: str | None = None,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO audit (at, who, role, action, target, status, detail)"
                " VALUES (?,?,?,?,?,?,?)",
                (at, who, role, action, target, status, detail),
            )

    def audit_log(self, limit: int = AUDIT_LISTED, who: str | None = None) -> list[dict[str, Any]]:
        """The latest entries, newest first (of `who` only, if given)."""
        where, args = ("WHERE who=?", [who]) if who else ("", [])
        rows = self._db.execute(
            f"SELECT at, who, role, action, target, status, detail FROM audit {where}"
            " ORDER BY rowid DESC LIMIT ?",
            (*args, limit),
        )
        return [dict(r) for r in rows]
