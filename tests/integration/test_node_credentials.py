"""Nodes that join with a join token, as processes: each gets a credential of its own, keeps it
in its data folder, takes work only from its orchestrator, and its credential can do nothing
else on the farm; revoked, the node joins again."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from render_node.credentials import CREDENTIAL_FILE
from tests.integration.farm_procs import farm
from tests.orch_helpers import wait_job, wait_until

ADMIN = "admin-s3cret-token"


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def test_a_joined_node_renders_and_its_credential_does_nothing_else(tmp_path: Path) -> None:
    join_file = tmp_path / "join" / "token"
    with farm(tmp_path) as f:
        f.start_orchestrator(token=ADMIN, join_token_file=str(join_file))
        node = f.start_node(extra=("--join-token-file", str(join_file)))
        admin = f.stack.enter_context(
            httpx.Client(base_url=f.url, headers=bearer(ADMIN), timeout=10)
        )
        wait_until(lambda: len(admin.get("/nodes").json()) == 1, 20, "the node to join")
        kept = tmp_path / "node0" / CREDENTIAL_FILE
        wait_until(kept.exists, 10, "the node's credential")
        credential = kept.read_text().strip()
        assert credential.startswith("farm_") and join_file.read_text().strip() not in credential
        (listed,) = admin.get("/tokens").json()
        assert (listed["role"], listed["created_by"]) == ("node", "join")

        # The orchestrator's work reaches it (with the key it registered), nobody else's does.
        job = admin.post("/render", json={"scene": "demo.blend", "frames": "1-3"}).json()["id"]
        assert wait_job(admin, job, timeout=30)["state"] == "completed"
        assert httpx.get(node.url + "/info", timeout=5).status_code == 401
        for token in (ADMIN, credential, join_file.read_text().strip()):
            assert (
                httpx.get(node.url + "/info", headers=bearer(token), timeout=5).status_code == 403
            )

        # What a node's credential, taken from the node, gets from the orchestrator.
        with httpx.Client(base_url=f.url, headers=bearer(credential), timeout=10) as stolen:
            assert (
                stolen.post("/render", json={"scene": "demo.blend", "frames": "1"}).status_code
                == 403
            )
            assert stolen.delete(f"/render/{job}").status_code == 403
            assert stolen.get(f"/render/{job}/frames").status_code == 403
            assert stolen.get(f"/render/{job}/frames/1").status_code == 403
            assert (
                stolen.post("/nodes/register", json={"url": "http://127.0.0.1:9"}).status_code
                == 403
            )

        # Revoked, the node is refused, joins again with the join token, and goes on.
        admin.delete(f"/tokens/{listed['name']}")
        wait_until(
            lambda: kept.exists() and kept.read_text().strip() != credential, 20, "a new credential"
        )
        time.sleep(1.5)  # a heartbeat or two with it
        (again,) = [t for t in admin.get("/tokens").json() if t["revoked"] is None]
        assert again["name"] == listed["name"] and again["created"] > listed["created"]
        job = admin.post("/render", json={"scene": "demo.blend", "frames": "4"}).json()["id"]
        assert wait_job(admin, job, timeout=30)["state"] == "completed"
