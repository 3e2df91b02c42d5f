"""Jobs that come after others ("after"): they wait, saying so, start when those complete,
and fail when one fails or is cancelled; the waiting survives a restart."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.integration.farm_procs import farm, submit
from tests.orch_helpers import wait_job


def test_a_job_waits_for_the_jobs_it_comes_after(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        client = f.start_farm(1, SECONDS="0.2", FAIL="50")
        first = submit(client, frames="1-6")
        second = submit(client, frames="10-12", after=[first])
        status = client.get(f"/render/{second}").json()
        assert status["after"] == [first] and status["state"] == "queued"
        assert status["waiting"].startswith("waiting for the jobs it comes after to complete")
        assert wait_job(client, second, timeout=60)["state"] == "completed"
        assert client.get(f"/render/{second}").json()["waiting"] is None
        # Every frame of the first was rendered before any of the second.
        order = f.rendered_by(0)
        assert max(order.index(n) for n in range(1, 7)) < min(order.index(n) for n in (10, 11))

        failing = submit(client, frames="50")
        then = submit(client, frames="60", after=[failing])
        and_then = submit(client, frames="70", after=[then, first])
        status = wait_job(client, and_then, timeout=60)
        assert status["state"] == "failed"
        assert client.get(f"/render/{then}").json()["state"] == "failed"
        assert f"job {then}, which it comes after, failed" in status["error"]
        assert 60 not in f.rendered_by(0) and 70 not in f.rendered_by(0)

        resp = client.post("/render", json={"scene": "demo.blend", "frames": "1",
                                            "after": ["0123456789ab"]})  # fmt: skip
        assert resp.status_code == 400 and "no job 0123456789ab" in resp.text


def test_a_cancelled_job_fails_those_after_it_and_waiting_survives_a_restart(
    tmp_path: Path,
) -> None:
    with farm(tmp_path) as f:
        client = f.start_farm(1, SECONDS="0.5")
        first_orch = f.orchestrator
        assert first_orch is not None
        long = submit(client, frames="1-20", batch_size=2)
        later = submit(client, frames="30", after=[long])
        os.killpg(first_orch.process.pid, signal.SIGKILL)
        first_orch.process.wait(5)
        f.start_orchestrator()
        time.sleep(1.0)
        status = client.get(f"/render/{later}").json()
        assert status["state"] == "queued" and status["waiting"], status  # still waiting
        client.delete(f"/render/{long}")
        status = wait_job(client, later, timeout=30)
        assert status["state"] == "failed" and "cancelled" in status["error"]
        assert 30 not in f.rendered_by(0)
