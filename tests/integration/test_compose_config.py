"""compose.yaml as the real compose tools read it (`config` only: no engine, no images): no
token, no farm; the orchestrator on loopback unless FARM_PUBLISH_ADDR says otherwise; Swarm's
spelling of the same in compose.swarm.yaml."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.settings import OrchestratorSettings
from render_node.settings import NodeSettings

ROOT = Path(__file__).resolve().parents[2]


def implementations() -> list[list[str]]:
    found = []
    if shutil.which("docker-compose"):
        found.append(["docker-compose"])
    if shutil.which("docker") and _runs(["docker", "compose", "version"]):
        found.append(["docker", "compose"])
    return found


def _runs(cmd: list[str]) -> bool:
    return subprocess.run(cmd, capture_output=True, check=False, timeout=60).returncode == 0


COMPOSE = implementations()
needs_stack = pytest.mark.skipif(
    not (shutil.which("docker") and _runs(["docker", "stack", "config", "--help"])),
    reason="this docker CLI has no `docker stack config`",
)


def run(cmd: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    # No engine is asked: `config` only reads the files.
    return subprocess.run(
        cmd, cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def config(compose: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`compose config` as `compose up` would read the files, a `.env` of the checkout aside."""
    empty = tmp_path / "empty.env"
    empty.touch()
    return run([*compose, "--env-file", str(empty), "config"], **env)


def services(out: str) -> dict[str, Any]:
    return dict(yaml.safe_load(out)["services"])


def published(port: Any) -> tuple[str, str]:
    """(host address, host port) of a port as either compose prints it."""
    if isinstance(port, dict):  # Compose v2: long syntax
        return str(port.get("host_ip", "")), str(port["published"])
    host, published_port, _ = str(port).rsplit(":", 2)  # 1.29: "127.0.0.1:8000:8000/tcp"
    return host, published_port


@pytest.mark.skipif(not COMPOSE, reason="neither docker-compose nor `docker compose` installed")
@pytest.mark.parametrize("compose", COMPOSE, ids=" ".join)
def test_compose_refuses_to_start_without_a_token_saying_so(
    compose: list[str], tmp_path: Path
) -> None:
    for env in ({}, {"FARM_TOKEN": ""}):
        done = config(compose, tmp_path, **env)
        assert done.returncode != 0, done.stdout
        assert "set FARM_TOKEN to a secret of your own" in done.stderr, done.stderr


@pytest.mark.skipif(not COMPOSE, reason="neither docker-compose nor `docker compose` installed")
@pytest.mark.parametrize("compose", COMPOSE, ids=" ".join)
def test_compose_publishes_the_orchestrator_on_loopback_unless_told(
    compose: list[str], tmp_path: Path
) -> None:
    done = config(compose, tmp_path, FARM_TOKEN="t0ken", FARM_PUBLISH_PORT="8123")
    assert done.returncode == 0, done.stderr
    farm = services(done.stdout)
    (port,) = farm["orchestrator"]["ports"]
    assert published(port) == ("127.0.0.1", "8123")
    assert "ports" not in farm["render-node"]
    for name in farm:
        assert farm[name]["mem_limit"], name
        # Nodes never hold the admin token: they join with the join token's file.
        environment = farm[name]["environment"]
        assert environment["FARM_JOIN_TOKEN_FILE"] == "/var/lib/farm-join/token"
        assert ("FARM_TOKEN" in environment) is (name == "orchestrator")
    assert farm["orchestrator"]["environment"]["FARM_TOKEN"] == "t0ken"
    mounts = {name: [str(v) for v in farm[name]["volumes"]] for name in farm}
    assert any("farm-join" in v and "/var/lib/farm-join" in v for v in mounts["orchestrator"])
    assert any("farm-join" in v and v.endswith(":ro") for v in mounts["render-node"]), mounts
    assert farm["orchestrator"]["pids_limit"] == 512
    everywhere = config(compose, tmp_path, FARM_TOKEN="t0ken", FARM_PUBLISH_ADDR="0.0.0.0")
    assert everywhere.returncode == 0, everywhere.stderr
    (port,) = services(everywhere.stdout)["orchestrator"]["ports"]
    assert published(port) == ("0.0.0.0", "8000")


@pytest.mark.skipif(not COMPOSE, reason="neither docker-compose nor `docker compose` installed")
@pytest.mark.parametrize("compose", COMPOSE, ids=" ".join)
def test_compose_passes_on_webhooks_tags_and_active_hours_and_leaves_them_blank(
    compose: list[str], tmp_path: Path
) -> None:
    given = {"FARM_WEBHOOK": "https://chat.example/hook", "FARM_WEBHOOK_SECRET": "s3cret",
             "FARM_TAGS": "gpu", "FARM_ACTIVE_HOURS": "mon-fri 19:00-08:00"}  # fmt: skip
    for env, seen in ((given, given), ({}, dict.fromkeys(given, ""))):
        done = config(compose, tmp_path, FARM_TOKEN="t0ken", **env)
        assert done.returncode == 0, done.stderr
        farm = services(done.stdout)
        orchestrator = farm["orchestrator"]["environment"]
        node = farm["render-node"]["environment"]
        for name in ("FARM_WEBHOOK", "FARM_WEBHOOK_SECRET"):
            assert (orchestrator.get(name) or "") == seen[name]
        for name in ("FARM_TAGS", "FARM_ACTIVE_HOURS"):
            assert (node.get(name) or "") == seen[name]


def test_blank_settings_from_compose_mean_none() -> None:
    node = NodeSettings(active_hours="  ", tags="")
    assert (node.active_hours, node.tag_list) == (None, [])
    assert OrchestratorSettings(webhook="", webhook_secret="").webhook_secret is None


@needs_stack
def test_a_swarm_stack_needs_a_token_too_and_gets_host_mode_and_limits() -> None:
    cmd = ["docker", "stack", "config", "-c", "compose.yaml", "-c", "compose.swarm.yaml"]
    refused = run(cmd)
    assert refused.returncode != 0
    assert "set FARM_TOKEN to a secret of your own" in refused.stderr, refused.stderr
    done = run(cmd, FARM_TOKEN="t0ken")
    assert done.returncode == 0, done.stderr
    orchestrator = services(done.stdout)["orchestrator"]
    (port,) = orchestrator["ports"]
    assert port["mode"] == "host" and port["target"] == 8000
    limits = orchestrator["deploy"]["resources"]["limits"]
    assert limits["memory"] and limits["pids"] == 512
    assert {"type": "tmpfs", "target": "/tmp"}.items() <= next(
        v for v in orchestrator["volumes"] if v["type"] == "tmpfs"
    ).items()
