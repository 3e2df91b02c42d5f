"""Webhooks from a real orchestrator: a job completed, failed and cancelled, a node lost, each
a JSON POST signed with HMAC-SHA256 of its raw body under the secret."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.integration.farm_procs import farm, submit
from tests.orch_helpers import wait_job, wait_until
from tests.servers import handler_server

SECRET = "hook-secret-for-tests"


@contextmanager
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on a loopback port; yields its URL and the events it took, each
    checked against its signature first."""
    events: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            good = hmac.compare_digest(self.headers.get("X-Farm-Signature", ""), expected)
            if good:
                events.append(json.loads(body))
            self.send_response(204 if good else 401)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    with handler_server(Handler) as url:
        yield f"{url}/hook", events


def test_jobs_ending_and_a_node_lost_are_told_signed(tmp_path: Path) -> None:
    with receiver() as (url, events), farm(tmp_path) as f:
        f.start_orchestrator("--webhook", url, "--webhook-secret", SECRET,
                             "--node-timeout-seconds", "2")  # fmt: skip
        node = f.start_node(FAIL="9", SECONDS="0.2")
        client = f.client()
        f.wait_nodes(client, 1)
        done = submit(client, frames="1-3")
        assert wait_job(client, done, timeout=60)["state"] == "completed"
        failed = submit(client, frames="9")
        assert wait_job(client, failed, timeout=60)["state"] == "failed"
        slow = submit(client, frames="20-40")
        client.delete(f"/render/{slow}")
        wait_until(lambda: len(events) >= 3, 20, "three job events")
        by_job = {e["job"]["id"]: e for e in events if e["event"].startswith("job.")}
        assert by_job[done]["event"] == "job.completed"
        assert by_job[done]["job"]["frames"] == {"total": 3, "done": 3, "failed": 0}
        assert by_job[done]["job"]["status_url"] == f"/render/{done}"
        assert by_job[failed]["event"] == "job.failed"
        assert by_job[slow]["event"] == "job.cancelled"
        node.process.kill()  # gone without a word: lost after the timeout
        wait_until(lambda: any(e["event"] == "node.lost" for e in events), 20, "node.lost")
        (lost,) = [e for e in events if e["event"] == "node.lost"]
        assert lost["node"]["url"] == node.url and isinstance(lost["at"], float)
