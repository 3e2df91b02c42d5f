"""The `orchestrator` command runs its scheduler in a child process: what users see of it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from tests.integration.farm_procs import farm, submit
from tests.orch_helpers import wait_job, wait_until


def children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
            if int(ppid) == pid and state != "Z":
                found.append(int(entry.name))
    return found


def engine_of(pid: int) -> int:
    """The scheduler process under the orchestrator `pid`."""
    for child in children(pid):
        if b"orchestrator.runtime.process" in Path(f"/proc/{child}/cmdline").read_bytes():
            return child
    raise AssertionError(f"no scheduler process under {pid}")


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def socket_folder(engine: int) -> Path:
    argv = Path(f"/proc/{engine}/cmdline").read_bytes().split(b"\0")
    return Path(argv[argv.index(b"orchestrator.runtime.process") + 1].decode()).parent


def test_status_and_files_answer_while_the_scheduler_process_is_frozen(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        orch = f.start_orchestrator()
        f.start_node(SECONDS="0.05")
        client = f.client()
        f.wait_nodes(client, 1)
        job_id = submit(client, frames="1-4", batch_size=2)
        assert wait_job(client, job_id, timeout=60)["state"] == "completed"
        engine = engine_of(orch.process.pid)
        os.kill(engine, signal.SIGSTOP)
        try:
            # Read from the store by the API's own process: a 5-s client timeout would fail
            # them if they waited on the frozen scheduler (whose requests time out in 5-30 s).
            quick = httpx.Client(base_url=f.url, timeout=5)
            status = quick.get(f"/render/{job_id}").json()
            assert status["state"] == "completed" and len(status["batches"]) == 2
            assert [j["id"] for j in quick.get("/render").json()] == [job_id]
            assert quick.get(f"/render/{job_id}/frames/3").status_code == 200
            # What needs the scheduler says so, and what to do, instead of hanging.
            slow = httpx.Client(base_url=f.url, timeout=30)
            nodes = slow.get("/nodes")
            assert nodes.status_code == 503, nodes.text
            assert "the scheduler is not answering" in nodes.json()["detail"]
            assert nodes.headers["Retry-After"] == "5"
        finally:
            os.kill(engine, signal.SIGCONT)
        assert client.get("/nodes").status_code == 200


def nice(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[16])  # field 19


def test_the_scheduler_process_yields_the_cpu_and_keeps_its_socket_private(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        orch = f.start_orchestrator()
        api = orch.process.pid
        engine = engine_of(api)
        assert nice(engine) == min(19, nice(api) + 5)
        # No token on its socket: no one but the orchestrator's user can open the folder.
        assert socket_folder(engine).stat().st_mode & 0o777 == 0o700


def test_a_killed_scheduler_process_stops_the_orchestrator_with_an_error(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        orch = f.start_orchestrator()
        engine = engine_of(orch.process.pid)
        folder = socket_folder(engine)
        os.kill(engine, signal.SIGKILL)
        assert orch.process.wait(30) == 1
        assert "the scheduler process was killed by signal 9" in orch.output()
        assert not folder.exists()


def test_the_scheduler_process_never_outlives_the_orchestrator(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        orch = f.start_orchestrator()
        engine = engine_of(orch.process.pid)
        folder = socket_folder(engine)
        # SIGTERM to the whole group, as systemd sends it: the orchestrator still stops the
        # scheduler in order (the child ignores the signal), and it cleans up.
        os.killpg(orch.process.pid, signal.SIGTERM)
        orch.process.wait(30)
        assert not alive(engine) and not folder.exists()
        assert "the scheduler process was killed" not in orch.output()
        assert "orchestrator stopped" in orch.output()

        # Killed: the child sees its stdin close, and stops on its own.
        orch = f.start_orchestrator()
        engine = engine_of(orch.process.pid)
        folder = socket_folder(engine)
        orch.process.kill()
        orch.process.wait(10)
        wait_until(lambda: not alive(engine), 30, "the scheduler process to stop")
        assert not folder.exists()


def test_single_process_keeps_the_scheduler_on_a_thread(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        orch = f.start_orchestrator("--single-process")
        f.start_node(SECONDS="0.05")
        client = f.client()
        f.wait_nodes(client, 1)
        job_id = submit(client, frames="1-4", batch_size=2)
        assert wait_job(client, job_id, timeout=60)["state"] == "completed"
        assert children(orch.process.pid) == []
