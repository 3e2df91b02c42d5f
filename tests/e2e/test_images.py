"""The images themselves: entry points import, Blender runs, non-root, tini, health checks.

Seconds to run; a packaging mistake shows up here with a clear message rather than as a
stack that never gets healthy.
"""

from __future__ import annotations

import docker
import pytest

from tests.e2e.farm import IMAGES

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

NODE, ORCHESTRATOR = IMAGES


def run(client: docker.DockerClient, image: str, *command: str) -> str:
    output = client.containers.run(image, list(command), remove=True, stderr=True)
    return bytes(output).decode(errors="replace")


@pytest.mark.parametrize(
    ("image", "command"),
    [
        (NODE, "render-node"),
        (ORCHESTRATOR, "orchestrator"),
        (ORCHESTRATOR, "farm"),
    ],
)
def test_console_scripts_start(docker_client: docker.DockerClient, images: None, image: str,
                               command: str) -> None:  # fmt: skip
    assert "usage:" in run(docker_client, image, command, "--help")


def test_node_image_runs_blender_as_the_farm_user(
    docker_client: docker.DockerClient, images: None
) -> None:
    out = run(docker_client, NODE, "sh", "-c", "id -un; blender --version")
    user, version = out.splitlines()[:2]
    assert user == "farm"
    assert version.startswith("Blender ")


@pytest.mark.parametrize("image", IMAGES)
def test_images_run_under_tini_with_a_health_check_and_no_root(
    docker_client: docker.DockerClient, images: None, image: str
) -> None:
    config = docker_client.images.get(image).attrs["Config"]
    assert config["Entrypoint"][0] == "tini"
    assert config["User"] == "farm"
    assert "/opt/farm/healthcheck.py" in config["Healthcheck"]["Test"]
    assert not any("TOKEN" in env for env in config["Env"]), "no token baked into the image"
