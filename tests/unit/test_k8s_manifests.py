"""docker/k8s, compose.yaml and the Dockerfiles agree: images, ports, env names, probes, users.

No cluster needed: the manifests are parsed as YAML and checked against the other two.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.settings import OrchestratorSettings
from render_node.settings import NodeSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "docker" / "k8s"

# The env names each service reads: FARM_ and a field of its settings (DESIGN.md: every flag
# also reads an environment variable). POD_IP is the downward-API helper.
CONTRACT_ENV = {
    service: {f"FARM_{name.upper()}" for name in settings.model_fields}
    for service, settings in (("render-node", NodeSettings), ("orchestrator", OrchestratorSettings))
}
PORTS = {"render-node": 8100, "orchestrator": 8000}
SERVICES = tuple(PORTS)


class Dockerfile:
    """The few facts of a Dockerfile the deployments depend on."""

    def __init__(self, service: str) -> None:
        text = (ROOT / "docker" / f"{service}.Dockerfile").read_text()
        self.text = re.sub(r"\\\n", " ", text)  # join continuation lines
        runtime = self.text.split("# ---- runtime ----")[-1]
        self.expose = {int(p) for p in re.findall(r"^EXPOSE\s+(\d+)", runtime, re.M)}
        self.env = dict(re.findall(r"\b(FARM_[A-Z_]+)=(\S+)", runtime))
        self.uid = int(re.search(r"useradd [^\n]*--uid (\d+)", runtime).group(1))  # type: ignore[union-attr]
        self.cmd = re.search(r"^CMD\s+(\[.*\])$", runtime, re.M).group(1)  # type: ignore[union-attr]


def load_k8s() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in load_k8s() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"want exactly one {kind}/{name} in docker/k8s"
    return matches[0]


def k8s_container(service: str) -> dict[str, Any]:
    (container,) = k8s_object("Deployment", service)["spec"]["template"]["spec"]["containers"]
    return dict(container)


def k8s_env(service: str) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in k8s_container(service)["env"]}


def ignored() -> str:
    return (ROOT / ".gitignore").read_text()


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text()))


def compose_image(service: str) -> str:
    image = compose()["services"][service]["image"]
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", image)  # the documented defaults


def test_kustomization_lists_every_manifest_and_both_images() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests
    assert {i["name"] for i in kustomization["images"]} == {f"blender-farm/{s}" for s in SERVICES}


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_and_compose_run_the_image_make_images_builds(service: str) -> None:
    build_script = (ROOT / "docker" / "build-images.sh").read_text()
    assert 'IMAGE_PREFIX="${IMAGE_PREFIX:-blender-farm}"' in build_script
    assert k8s_container(service)["image"] == f"blender-farm/{service}:latest"
    assert compose_image(service) == f"blender-farm/{service}:latest"
    assert compose()["services"][service]["build"]["dockerfile"] == f"docker/{service}.Dockerfile"


@pytest.mark.parametrize("service", SERVICES)
def test_ports_agree_across_dockerfile_k8s_and_compose(service: str) -> None:
    port = PORTS[service]
    dockerfile = Dockerfile(service)
    assert dockerfile.expose == {port}
    assert dockerfile.env["FARM_PORT"] == str(port)
    assert f'"--port", "{port}"' in dockerfile.cmd
    container = k8s_container(service)
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert container["args"] == yaml.safe_load(dockerfile.cmd)


def test_orchestrator_service_and_node_registration_url_agree() -> None:
    service = k8s_object("Service", "orchestrator")
    (port,) = service["spec"]["ports"]
    assert port["port"] == PORTS["orchestrator"]
    selector = service["spec"]["selector"]
    pod_labels = k8s_object("Deployment", "orchestrator")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    url = f"http://orchestrator:{PORTS['orchestrator']}"
    assert k8s_env("render-node")["FARM_ORCHESTRATOR"]["value"] == url
    assert compose()["services"]["render-node"]["environment"]["FARM_ORCHESTRATOR"] == url
    assert "ports" not in compose()["services"]["orchestrator"]  # per target, below
    swarm = yaml.safe_load((ROOT / "compose.swarm.yaml").read_text())["services"]
    (published,) = swarm["orchestrator"]["ports"]
    assert published["target"] == PORTS["orchestrator"]
    assert published["published"] == "${FARM_PUBLISH_PORT:-8000}"
    assert published["mode"] == "host"
    override = yaml.safe_load((ROOT / "compose.override.yaml").read_text())["services"]
    (short,) = override["orchestrator"]["ports"]
    assert short.endswith(":${FARM_PUBLISH_PORT:-8000}:" + str(PORTS["orchestrator"]))


def test_render_nodes_advertise_their_pod_ip_from_the_downward_api() -> None:
    env = k8s_container("render-node")["env"]
    names = [e["name"] for e in env]
    pod_ip = env[names.index("POD_IP")]
    assert pod_ip["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    # $(VAR) only expands variables defined earlier in the list.
    assert names.index("POD_IP") < names.index("FARM_ADVERTISE_URL")
    assert env[names.index("FARM_ADVERTISE_URL")]["value"] == "http://$(POD_IP):8100"
    # compose and swarm leave it unset: the node advertises its own container IP.
    assert "FARM_ADVERTISE_URL" not in compose()["services"]["render-node"]["environment"]


@pytest.mark.parametrize("service", SERVICES)
def test_env_names_are_ones_the_service_reads(service: str) -> None:
    allowed = CONTRACT_ENV[service]
    assert set(k8s_env(service)) - {"POD_IP"} <= allowed
    assert set(compose()["services"][service]["environment"]) <= allowed
    assert set(Dockerfile(service).env) <= allowed


@pytest.mark.parametrize("service", SERVICES)
def test_token_comes_from_the_users_secret_and_dirs_match_the_image(service: str) -> None:
    env = k8s_env(service)
    ref = env["FARM_TOKEN"]["valueFrom"]["secretKeyRef"]
    # Made by kustomize from a file the user writes (git ignores it): no token ships.
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    (generator,) = [g for g in kustomization["secretGenerator"] if g["name"] == ref["name"]]
    assert kustomization["generatorOptions"]["disableNameSuffixHash"] is True
    (env_file,) = generator["envs"]
    assert not (K8S / env_file).exists() or f"docker/k8s/{env_file}" in ignored()
    assert not [d for d in load_k8s() if d["kind"] == "Secret"]
    # compose refuses to start without one, saying so; its nodes join with the join token.
    environment = compose()["services"][service]["environment"]
    if service == "orchestrator":
        token = environment["FARM_TOKEN"]
        assert token.startswith("${FARM_TOKEN:?") and "change-me" not in token
    else:
        assert "FARM_TOKEN" not in environment and environment["FARM_JOIN_TOKEN_FILE"]
    dockerfile = Dockerfile(service)
    for name in ("FARM_DATA_DIR", "FARM_SCENES_DIR"):
        assert env[name]["value"] == dockerfile.env[name]
        assert compose()["services"][service]["environment"][name] == dockerfile.env[name]
    mounts = {m["mountPath"] for m in k8s_container(service)["volumeMounts"]}
    assert {dockerfile.env["FARM_DATA_DIR"], dockerfile.env["FARM_SCENES_DIR"]} <= mounts


def test_orchestrator_data_dir_is_on_the_persistent_volume_claim() -> None:
    pod = k8s_object("Deployment", "orchestrator")["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "data"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "data"]
    claim = volume["persistentVolumeClaim"]["claimName"]
    k8s_object("PersistentVolumeClaim", claim)
    assert mount["mountPath"] == Dockerfile("orchestrator").env["FARM_DATA_DIR"]
    volumes = compose()["services"]["orchestrator"]["volumes"]
    assert f"orchestrator-data:{mount['mountPath']}" in volumes


@pytest.mark.parametrize("service", SERVICES)
def test_probes_hit_health_like_the_image_healthcheck(service: str) -> None:
    container = k8s_container(service)
    for probe in ("readinessProbe", "livenessProbe"):
        http_get = container[probe]["httpGet"]
        assert http_get["path"] == "/health"
        assert http_get["port"] in ("http", PORTS[service])
    dockerfile = Dockerfile(service)
    assert re.search(
        r"HEALTHCHECK .*CMD \[\"python3\", \"/opt/farm/healthcheck.py\"\]", dockerfile.text
    )
    assert "/health" in (ROOT / "docker" / "healthcheck.py").read_text()


# What the render node keeps to run Blender as farm-blender (render_node/sandbox.py, user mode).
NODE_CAPABILITIES = {"CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETUID", "SETGID"}


@pytest.mark.parametrize("service", SERVICES)
def test_pods_are_locked_down_with_resources(service: str) -> None:
    pod = k8s_object("Deployment", service)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    locked = container["securityContext"]
    assert locked["allowPrivilegeEscalation"] is False
    assert locked["readOnlyRootFilesystem"] is True
    assert locked["capabilities"]["drop"] == ["ALL"]
    assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}
    if service == "orchestrator":
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == Dockerfile(service).uid
        assert "add" not in locked["capabilities"]
    else:  # root in the pod, Blender as farm-blender, few capabilities
        assert pod["securityContext"]["runAsUser"] == 0
        assert set(locked["capabilities"]["add"]) == NODE_CAPABILITIES
        assert "farm-blender" in Dockerfile(service).text
        assert not re.search(r"^USER ", Dockerfile(service).text.split("---- runtime")[-1], re.M)
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def overlay(name: str) -> dict[str, Any]:
    """The services of compose.override.yaml (compose) or compose.swarm.yaml (Swarm)."""
    return dict(yaml.safe_load((ROOT / name).read_text())["services"])


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Two compose files as one, mappings merged key by key (lists here never overlap)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = [*out[key], *value]
        else:
            out[key] = value
    return out


def test_compose_services_are_locked_down_the_same_way() -> None:
    services = compose()["services"]
    for name, service in services.items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert any(t.startswith("/tmp:") for t in service["tmpfs"]), name
    assert "cap_add" not in services["orchestrator"]
    assert set(services["render-node"]["cap_add"]) == NODE_CAPABILITIES
    (published,) = overlay("compose.override.yaml")["orchestrator"]["ports"]
    assert published.startswith("${FARM_PUBLISH_ADDR:-127.0.0.1}:"), published


MEMORY = {
    "orchestrator": "${FARM_ORCHESTRATOR_MEMORY:-2g}",
    "render-node": "${FARM_NODE_MEMORY:-8g}",
}


@pytest.mark.parametrize("service", SERVICES)
def test_memory_is_bounded_in_compose_and_swarm_alike(service: str) -> None:
    override, swarm = overlay("compose.override.yaml"), overlay("compose.swarm.yaml")
    assert override[service]["mem_limit"] == MEMORY[service]
    assert swarm[service]["deploy"]["resources"]["limits"]["memory"] == MEMORY[service]
    pids = swarm[service]["deploy"]["resources"]["limits"]["pids"]
    assert override[service]["pids_limit"] == pids


@pytest.mark.parametrize("service", SERVICES)
def test_compose_v1_and_v2_both_accept_the_limits(service: str) -> None:
    """Compose v2 refuses a project whose `mem_limit`, `pids_limit` or `cpus` differ from a
    `deploy.resources.limits` of the same service, a key left unset included (compose-go's
    checkConsistency); docker-compose 1.29 refuses `deploy.resources.limits.pids` outright."""
    project = merged(compose(), {"services": overlay("compose.override.yaml")})
    definition = project["services"][service]
    limits = definition.get("deploy", {}).get("resources", {}).get("limits")
    if limits is not None:
        assert "pids" not in limits
        for key, deploy_key in (("mem_limit", "memory"), ("pids_limit", "pids"), ("cpus", "cpus")):
            if key in definition:
                assert limits.get(deploy_key) == definition[key], (key, limits)


@pytest.mark.parametrize("service", SERVICES)
def test_swarm_gives_each_read_only_service_a_tmp(service: str) -> None:
    """`docker stack deploy` ignores the `tmpfs:` key; uploads, video encodes and Blender's
    stray temp files need /tmp."""
    mounts = overlay("compose.swarm.yaml")[service]["volumes"]
    assert [m for m in mounts if m["type"] == "tmpfs" and m["target"] == "/tmp"], mounts


def test_three_render_nodes_by_default_everywhere() -> None:
    assert k8s_object("Deployment", "render-node")["spec"]["replicas"] == 3
    assert compose()["services"]["render-node"]["deploy"]["replicas"] == 3
    assert "ports" not in compose()["services"]["render-node"], "nodes are not published"
