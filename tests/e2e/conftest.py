"""Fixtures for the Docker end-to-end tests: engine, images, and a compose stack per module.

Skipped (with the reason in `pytest -ra`) only when no Docker engine answers.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import docker
import pytest

from tests.e2e.farm import ARTIFACTS, IMAGES, ROOT, ComposeStack, FarmAPI, free_port, wait_for


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine reachable: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def images(docker_client: docker.DockerClient) -> None:
    """Build the images with docker/build-images.sh.

    It runs even when the images exist, so the tests never exercise stale code: with Docker's
    layer cache an unchanged tree rebuilds in seconds. FARM_E2E_BUILD=0 skips it when the
    images are present: `make test` builds them before pytest, outside any test timeout.
    """
    present = all(_image_exists(docker_client, name) for name in IMAGES)
    if present and os.environ.get("FARM_E2E_BUILD") == "0":
        return
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "build-images.log"
    with log.open("w") as out:
        done = subprocess.run(
            ["bash", str(ROOT / "docker" / "build-images.sh")],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1500,
            check=False,
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        pytest.fail(f"docker/build-images.sh failed (full log: {log}):\n{tail}")


def _image_exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


@pytest.fixture(scope="module")
def stack(docker_client: docker.DockerClient, images: None) -> Iterator[ComposeStack]:
    """compose.yaml up under a unique project name with 3 nodes; always torn down, volumes too."""
    compose = ComposeStack(
        project=f"farme2e{secrets.token_hex(3)}",
        token=secrets.token_urlsafe(16),
        port=free_port(),
        client=docker_client,
    )
    try:
        compose.up()
        api = FarmAPI(compose.url, compose.token)
        try:
            wait_for("the orchestrator's /health", api.healthy, timeout=90)
            api.wait_nodes(3, timeout=120)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{compose.logs_tail()}") from None
        finally:
            api.close()
        yield compose
    finally:
        compose.save_logs()
        compose.down()


@pytest.fixture
def api(stack: ComposeStack) -> Iterator[FarmAPI]:
    client = FarmAPI(stack.url, stack.token)
    yield client
    client.close()
