"""The same compose.yaml as a Swarm stack on a single-node swarm: 3 replicas render a job.

Initialises the swarm (advertising 127.0.0.1) only when the engine is not in one, and then
leaves it again; an engine that already manages a swarm is used as it is and left in it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator

import docker
import pytest

from tests.e2e.farm import (
    ARTIFACTS,
    COMPOSE_FILE,
    ROOT,
    SWARM_FILE,
    FarmAPI,
    assert_every_frame_once,
    free_port,
    wait_for,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


def _swarm_state(client: docker.DockerClient) -> tuple[str, bool]:
    swarm = client.info().get("Swarm", {})
    return str(swarm.get("LocalNodeState", "inactive")), bool(swarm.get("ControlAvailable"))


def _network_exists(client: docker.DockerClient, name: str) -> bool:
    return bool(client.networks.list(names=[name]))


@pytest.fixture
def swarm(docker_client: docker.DockerClient) -> Iterator[docker.DockerClient]:
    state, manager = _swarm_state(docker_client)
    if state == "active" and not manager:
        pytest.skip("this engine is a swarm worker: stacks can only be deployed on a manager")
    joined_here = state != "active"
    had_gwbridge = _network_exists(docker_client, "docker_gwbridge")
    if joined_here:
        docker_client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
    try:
        yield docker_client
    finally:
        if joined_here:
            docker_client.swarm.leave(force=True)
            if not had_gwbridge:
                # swarm init creates docker_gwbridge and leaving keeps it; it frees up shortly.
                for _ in range(20):
                    try:
                        docker_client.networks.get("docker_gwbridge").remove()
                        break
                    except docker.errors.NotFound:
                        break
                    except docker.errors.APIError:
                        time.sleep(0.5)


def _stack(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["docker", "stack", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"docker stack {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _remove_stack(client: docker.DockerClient, name: str, env: dict[str, str]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    logs = []
    for service in client.services.list(filters={"label": f"com.docker.stack.namespace={name}"}):
        logs.append(f"== {service.name}")
        logs.extend(
            line.decode(errors="replace") for line in service.logs(stdout=True, stderr=True)
        )
    (ARTIFACTS / f"e2e-{name}.log").write_text("".join(logs))
    _stack("rm", name, env=env)
    label = {"label": f"com.docker.stack.namespace={name}"}
    wait_for(
        "the stack's containers to go",
        lambda: not client.containers.list(all=True, filters=label),
        60,
    )
    wait_for(
        "the stack's network to go",
        lambda: not client.networks.list(filters=label),
        60,
    )
    for volume in client.volumes.list(filters=label):
        volume.remove(force=True)


def test_stack_deploy_renders_a_job_on_three_replicas(
    swarm: docker.DockerClient, images: None
) -> None:
    name = f"farmswarm{secrets.token_hex(3)}"
    token = secrets.token_urlsafe(16)
    port = free_port()
    env = {**os.environ, "FARM_TOKEN": token, "FARM_PUBLISH_PORT": str(port)}
    api = FarmAPI(f"http://127.0.0.1:{port}", token)
    try:
        files = ["--compose-file", str(COMPOSE_FILE), "--compose-file", str(SWARM_FILE)]
        _stack("deploy", *files, name, env=env)
        wait_for("the orchestrator's /health via the ingress port", api.healthy, timeout=120)
        nodes = api.wait_nodes(3, timeout=150)
        assert len(nodes) == 3

        job_id = api.render(api.upload_scene(), "1-6", batch_size=1)
        job = api.wait_job(job_id, timeout=180)

        assert_every_frame_once(api, job, range(1, 7))
    finally:
        api.close()
        _remove_stack(swarm, name, env)
