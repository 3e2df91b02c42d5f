"""The images themselves: entry points import, Blender runs, users, tini, health checks.

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


def test_node_image_runs_blender_as_farm_blender_not_as_the_node(
    docker_client: docker.DockerClient, images: None
) -> None:
    """The node runs as root in its container only to run Blender as farm-blender, a user
    with no home and no shell, which the node's own --sandbox auto picks there."""
    probe = (
        "import pwd; from render_node.sandbox import choose_sandbox; "
        "s = choose_sandbox('auto', user='farm-blender', hide=[]); "
        "u = pwd.getpwnam('farm-blender'); print(s.describe(), u.pw_uid, u.pw_dir, u.pw_shell)"
    )
    out = run(docker_client, NODE, "sh", "-c", f'id -un; blender --version; python3 -c "{probe}"')
    lines = out.splitlines()
    assert lines[0] == "root"
    assert lines[1].startswith("Blender ")
    assert lines[-1] == "user farm-blender 10002 /nonexistent /usr/sbin/nologin", out


@pytest.mark.parametrize("image", IMAGES)
def test_images_run_under_tini_with_a_health_check(
    docker_client: docker.DockerClient, images: None, image: str
) -> None:
    config = docker_client.images.get(image).attrs["Config"]
    assert config["Entrypoint"][0] == "tini"
    # The orchestrator is never root; the node is root only to hand Blender to farm-blender.
    assert config["User"] == ("farm" if image == ORCHESTRATOR else "")
    assert "/opt/farm/healthcheck.py" in config["Healthcheck"]["Test"]
    assert not any("TOKEN" in env for env in config["Env"]), "no token baked into the image"


def test_node_image_defaults_to_bpy_which_farm_blender_can_import(
    docker_client: docker.DockerClient, images: None
) -> None:
    """`--blender auto` (FARM_BLENDER in the image) picks Blender 5.0's bpy, and the user the
    worker runs as can import it from the read-only venv."""
    probe = (
        "from render_node.engine import parse_engine; from render_node.settings import "
        "NodeSettings; e = parse_engine(NodeSettings().blender); print(e.kind)"
    )
    out = run(
        docker_client, NODE, "sh", "-c",
        f'python3 -c "{probe}"; setpriv --reuid 10002 --regid 10002 --clear-groups '
        "python3 -c 'import bpy; print(bpy.app.version_string)'",
    )  # fmt: skip
    lines = out.splitlines()
    assert lines[0] == "bpy", out
    assert lines[-1].startswith("5.0"), out
