"""compose.yaml against real containers: 3 nodes share a job, scaling, and mid-job failures.

One stack serves the module (starting one costs ~20 s on 2 cores); each test first waits for
the 3 healthy nodes it needs, so a test that takes a node away puts it back before it ends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from tests.e2e.farm import (
    DEMO_SCENE,
    DONE_STATES,
    ComposeStack,
    FarmAPI,
    assert_every_frame_once,
    batch_frames,
    host_of,
    wait_for,
)
from tests.integration.test_real_blender_containment import file_output_scene

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

BLENDER = shutil.which("blender")


def test_demo_frames_render_on_all_three_node_containers(stack: ComposeStack, api: FarmAPI) -> None:
    nodes = api.wait_nodes(3)
    containers = stack.containers("render-node")
    assert len(containers) == 3
    # Nodes registered under their own container IPs, not the service name.
    assert {host_of(n["url"]) for n in nodes} == {stack.container_ip(c) for c in containers}

    job_id = api.render("demo.blend", "1-12", batch_size=2)  # from the read-only scenes mount
    job = api.wait_job(job_id)

    assert_every_frame_once(api, job, range(1, 13))
    workers = {b["node"] for b in job["batches"] if b["state"] in DONE_STATES}
    assert workers == {n["url"] for n in nodes}, "every node container should get work"


def test_a_packed_shot_renders_in_containers_that_share_nothing_with_the_client(
    stack: ComposeStack, api: FarmAPI, tmp_path: Path
) -> None:
    """`farm render` of scenes/shot from the host: its library, textures, sequence and cache
    reach the node containers only through the orchestrator's file store, and the frames are
    Blender's own (the nodes run the bpy the host's venv has, from the same wheel)."""
    api.wait_nodes(3)
    shot = Path(__file__).resolve().parents[2] / "scenes" / "shot" / "shots" / "010" / "shot.blend"
    env = {**os.environ, "FARM_ORCHESTRATOR": stack.url, "FARM_TOKEN": stack.token}

    def farm_render(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator.client.cli", "render", str(shot), *args],
            env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    first = farm_render("--frames", "1-6", "--batch-size", "2", "--out", str(tmp_path / "f"))
    assert first.returncode == 0, first.stdout + first.stderr
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == [
        f"frame_{n:05d}.png" for n in range(1, 7)
    ]
    again = farm_render("--frames", "1", "--no-download")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "sending 0 files, 0.0 MB" in again.stdout
    # every frame as bpy renders the shot in place, in one process
    local = tmp_path / "local"
    code = (
        "import bpy, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1], use_scripts=False); "
        "s = bpy.context.scene; s.frame_start, s.frame_end = 1, 6; "
        "s.render.filepath = sys.argv[2]; bpy.ops.render.render(animation=True)"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(shot), str(local / "frame_#####")],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    for frame in range(1, 7):
        name = f"frame_{frame:05d}.png"
        with Image.open(tmp_path / "f" / name) as ours, Image.open(local / name) as theirs:
            difference = ImageChops.difference(ours.convert("RGBA"), theirs.convert("RGBA"))
            assert difference.getbbox() is None, name


def save_with_bpy(source: Path, target: Path, change: str = "") -> Path:
    """`source` saved by the host's bpy (Blender 5.0: the header says so), after `change`
    (Python run on `s`, its scene)."""
    code = (
        "import bpy, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1], use_scripts=False); "
        f"s = bpy.context.scene; {change or 'pass'}; "
        "bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2], copy=True)"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(source), str(target)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert target.read_bytes()[:17] == b"BLENDER17-01v0500"
    return target


def test_a_blender_5_scene_renders_on_bpy_nodes_and_never_on_a_3_4_node(
    stack: ComposeStack, api: FarmAPI, tmp_path: Path
) -> None:
    """The image's default engine is bpy 5.0; a fourth node of the same image started with
    Debian's Blender 3.4 joins the farm and is never handed the 5.0 scene; pinned to 3.4, the
    job is refused at submission, saying why."""
    nodes = api.wait_nodes(3)
    assert {(n["engine"], n["blender_version"][:2]) for n in nodes} == {("bpy", "5.")}, nodes
    scene = api.upload_scene(save_with_bpy(DEMO_SCENE, tmp_path / "demo_50.blend"))
    stack.compose(
        "run", "-d", "--no-deps", "-e", "FARM_BLENDER=/usr/bin/blender", "--name",
        f"{stack.project}-old-blender", "render-node",
    )  # fmt: skip
    try:
        nodes = api.wait_nodes(4)
        old = [n["url"] for n in nodes if n["engine"] == "blender"]
        assert len(old) == 1, nodes
        assert [n["blender_version"][:4] for n in nodes if n["url"] in old] == ["3.4."], nodes
        job = api.wait_job(api.render(scene, "1-8", batch_size=1))
        assert_every_frame_once(api, job, range(1, 9))
        assert old[0] not in {b["node"] for b in job["batches"]}, job["batches"]

        pinned = api.http.post(
            "/render", json={"scene": scene, "frames": "1", "blender_version": "3.4"}
        )
        assert pinned.status_code == 409, pinned.text
        assert "saved by Blender 5.0" in pinned.json()["detail"], pinned.text
    finally:
        subprocess.run(
            ["docker", "rm", "-f", f"{stack.project}-old-blender"],
            capture_output=True, timeout=60,
        )  # fmt: skip
        # the next tests count healthy nodes: wait until the farm has seen it go
        wait_for(
            "the 3.4 node lost",
            lambda: all(n["engine"] != "blender" for n in api.healthy_nodes()) or None,
            timeout=60,
        )


def test_a_still_split_in_nine_tiles_is_the_frame_bpy_renders_in_place(
    stack: ComposeStack, api: FarmAPI, tmp_path: Path
) -> None:
    """`farm render --tiles 9` from the host: the three containers render the regions and the
    orchestrator's stitched frame is, pixel for pixel, the frame bpy renders whole on the host
    (dither off: Blender seeds its dither noise per region)."""
    api.wait_nodes(3)
    scene = save_with_bpy(DEMO_SCENE, tmp_path / "still.blend", "s.render.dither_intensity = 0")
    env = {**os.environ, "FARM_ORCHESTRATOR": stack.url, "FARM_TOKEN": stack.token}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.client.cli", "render", str(scene), "--frames", "3",
         "--tiles", "9", "--out", str(tmp_path / "out")],
        env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "regions 9/9 (3x3 a frame)" in done.stdout
    job = api.wait_job(api.http.get("/render").json()[0]["id"])
    assert job["tiles"]["done"] == 9 and len(job["nodes"]) >= 2, job
    code = (
        "import bpy, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1], use_scripts=False); "
        "s = bpy.context.scene; s.frame_set(3); s.render.filepath = sys.argv[2]; "
        "bpy.ops.render.render(write_still=True)"
    )
    whole = tmp_path / "whole.png"
    subprocess.run(
        [sys.executable, "-c", code, str(scene), str(whole)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    with Image.open(tmp_path / "out" / "frame_00003.png") as ours, Image.open(whole) as theirs:
        assert ours.size == theirs.size == (320, 240)
        difference = ImageChops.difference(ours.convert("RGBA"), theirs.convert("RGBA"))
        assert difference.getbbox() is None


def test_dashboard_and_its_static_files_are_in_the_image(api: FarmAPI) -> None:
    page = api.http.get("/")
    assert page.status_code == 200, page.text[:200]
    assert "<html" in page.text.lower()
    style = api.http.get("/static/style.css")
    assert style.status_code == 200, "orchestrator/static/* should be packaged into the image"


def test_the_orchestrator_runs_locked_down_and_published_on_loopback_only(
    stack: ComposeStack, api: FarmAPI, tmp_path: Path
) -> None:
    """compose.yaml with compose.override.yaml, as `docker compose up` reads them: the
    README's hardening on the orchestrator, memory limits on both services, and the
    orchestrator answering (it writes only its volume and /tmp) with the token stack set."""
    (orchestrator,) = stack.containers("orchestrator")
    host = orchestrator.attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert "/tmp" in host["Tmpfs"]
    assert host["Memory"] == 2 * 1024**3
    assert host["PidsLimit"] == 512
    bindings = host["PortBindings"]["8000/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"], bindings
    for node in stack.containers("render-node"):
        assert node.attrs["HostConfig"]["Memory"] == 8 * 1024**3
    assert api.http.get("/render", headers={"Authorization": ""}).status_code == 401
    # Past 1 MB a multipart upload spools to /tmp: the one writable place besides the volume.
    big = tmp_path / "big.blend"
    big.write_bytes(b"BLENDER-v300" + bytes(3 << 20))
    assert api.upload_scene(big).startswith("sha256:")


def test_day_to_day_controls_work_across_containers(stack: ComposeStack, api: FarmAPI) -> None:
    """Issue 20 in compose: a drained node takes nothing, a paused one hands its batch back,
    a job no node has the tags of waits saying so and is deleted, frames of a completed job
    are requeued, and a video job made after it encodes them on the orchestrator."""
    nodes = api.wait_nodes(3)

    def act(action: str, url: str) -> str:
        response = api.http.post(f"/nodes/{action}", json={"url": url})
        assert response.status_code == 200, response.text
        return str(response.json()["state"])

    drained = nodes[0]["url"]
    assert act("drain", drained) == "draining"
    try:
        job_id = api.render("demo.blend", "1-9", batch_size=1)
        running = api.running_batch(job_id)
        paused = running["node"]
        assert paused != drained
        assert act("pause", paused) == "paused"
        paused_at = time.time()
        job = api.wait_job(job_id)
    finally:
        act("resume", drained)
    assert act("resume", paused) in ("healthy", "busy")
    assert_every_frame_once(api, job, range(1, 10))
    assert drained not in {b["node"] for b in job["batches"]}
    after_pause = [b for b in job["batches"] if (b["started"] or 0) > paused_at + 1]
    assert after_pause and paused not in {b["node"] for b in after_pause}

    response = api.http.post(
        "/render", json={"scene": "demo.blend", "frames": "1", "tags": ["gpu"]}
    )
    gpu_job = response.json()["id"]
    said = wait_for("the gpu job to say why it waits", lambda: api.job(gpu_job)["waiting"], 10)
    assert said.startswith("waiting for a node with the tags gpu")
    assert api.http.delete(f"/render/{gpu_job}").json()["state"] == "cancelled"
    assert api.http.post(f"/render/{gpu_job}/delete").json()["deleted"] is True
    assert api.http.get(f"/render/{gpu_job}").status_code == 404

    response = api.http.post(f"/render/{job_id}/requeue", json={"frames": "2-3"})
    assert response.status_code == 202, response.text
    response = api.http.post(f"/render/{job_id}/video", json={"fps": 6})
    assert response.status_code == 202, response.text
    video_id = response.json()["id"]
    video = api.wait_job(video_id)
    assert video["state"] == "completed" and video["after"] == [job_id], video
    job = api.job(job_id)
    assert job["state"] == "completed" and [r["frames"] for r in job["requeues"]] == ["2-3"]
    mp4 = api.http.get(f"/render/{video_id}/video.mp4")
    assert mp4.status_code == 200 and mp4.content[4:8] == b"ftyp"


def test_killed_node_container_its_frames_rerender_elsewhere_once(
    stack: ComposeStack, api: FarmAPI
) -> None:
    api.wait_nodes(3)
    job_id = api.render(api.upload_scene(), "1-18", batch_size=3)
    victim_batch = api.running_batch(job_id)
    victim = stack.node_container(victim_batch["node"])

    victim.kill()
    job = api.wait_job(job_id, timeout=240)

    assert_every_frame_once(api, job, range(1, 19))
    lost = set(batch_frames(victim_batch))
    delivered_by = {f["frame"]: f.get("node") for f in api.frames(job_id)}
    rerendered = {f for f in lost if delivered_by[f] != victim_batch["node"]}
    assert rerendered, f"frames {sorted(lost)} of the killed node should be re-rendered elsewhere"

    victim.reload()
    if victim.status != "running":
        victim.start()
    api.wait_nodes(3)


def test_partitioned_node_frames_requeued_and_node_healthy_after_reconnect(
    stack: ComposeStack, api: FarmAPI
) -> None:
    api.wait_nodes(3)
    network = stack.client.networks.get(stack.network_name)
    job_id = api.render(api.upload_scene(), "1-18", batch_size=3)
    cut_batch = api.running_batch(job_id)
    cut_url = cut_batch["node"]
    cut = stack.node_container(cut_url)

    network.disconnect(cut, force=True)
    try:
        wait_for(
            f"{cut_url} to be marked lost",
            lambda: any(n["url"] == cut_url and n["state"] == "lost" for n in api.nodes()),
            timeout=30,
        )
        job = api.wait_job(job_id, timeout=240)
    finally:
        network.connect(cut, aliases=["render-node"])

    assert_every_frame_once(api, job, range(1, 19))
    delivered_by = {f["frame"]: f.get("node") for f in api.frames(job_id)}
    requeued = {f for f in batch_frames(cut_batch) if delivered_by[f] != cut_url}
    assert requeued, "the cut node's unfinished frames should be re-queued on other nodes"

    ip = stack.container_ip(cut)
    wait_for(
        f"the reconnected node ({ip}) to be healthy again",
        lambda: any(host_of(n["url"]) == ip for n in api.healthy_nodes()),
        timeout=60,
    )


def test_orchestrator_restart_mid_job_resumes_and_completes(
    stack: ComposeStack, api: FarmAPI
) -> None:
    api.wait_nodes(3)
    job_id = api.render(api.upload_scene(), "1-24", batch_size=2)
    wait_for("a few frames collected", lambda: api.job(job_id)["frames"]["done"] >= 4, 120)

    (orchestrator,) = stack.containers("orchestrator")
    orchestrator.restart(timeout=10)
    wait_for("the orchestrator back up", api.healthy, timeout=60)

    job = api.wait_job(job_id, timeout=240)
    assert_every_frame_once(api, job, range(1, 25))


# Run inside a node container: the files Blender must never have touched.
INSIDE = """
import hashlib, json, os
store = "/var/lib/farm/scenes"
scenes = {n: hashlib.sha256(open(os.path.join(store, n), "rb").read()).hexdigest()
          for n in sorted(os.listdir(store)) if n.endswith(".blend")}
planted = [os.path.join(d, n) for d in ("/var/lib/farm", store, "/tmp", "/") for n in os.listdir(d)
           if n.startswith("escaped_")]
print(json.dumps({"scenes": scenes, "planted": planted}))
"""


@pytest.mark.skipif(BLENDER is None, reason="the attacking scene is made by the host's Blender")
def test_node_containers_run_blender_as_farm_blender_inside_its_job(
    stack: ComposeStack, api: FarmAPI, tmp_path: Path
) -> None:
    api.wait_nodes(3)
    attack = file_output_scene(
        tmp_path / "attack.blend", "/var/lib/farm/", "escaped_", extension=True
    )
    store_attack = file_output_scene(tmp_path / "store.blend", "//", "escaped_", extension=True)
    jobs = [api.render(api.upload_scene(p), "1-3", batch_size=1) for p in (attack, store_attack)]
    for job_id in jobs:
        assert api.wait_job(job_id)["state"] == "completed"
    assert {n["sandbox"] for n in api.nodes()} == {"user farm-blender"}
    for container in stack.containers("render-node"):
        code, out = container.exec_run(["python3", "-c", INSIDE])
        assert code == 0, out.decode()
        seen = json.loads(out)
        assert seen["planted"] == [], seen
        # Every stored scene still hashes to its name: nothing wrote into the store.
        assert all(name == f"{sha}.blend" for name, sha in seen["scenes"].items()), seen


# Run inside a node container: what its credentials get from the orchestrator.
STOLEN = """
import json, os, sys, urllib.error, urllib.request
def status(method, path, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request("http://orchestrator:8000" + path, data=data, method=method,
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as error:
        return error.code
job = sys.argv[1]
tokens = {"credential": open("/var/lib/farm/orchestrator-credential").read().strip(),
          "join": open("/var/lib/farm-join/token").read().strip()}
print(json.dumps({"env": sorted(k for k in os.environ if k.startswith("FARM_")), "answers": {
    name: [status("POST", "/render", t, {"scene": "demo.blend", "frames": "1"}),
           status("DELETE", "/render/" + job, t), status("GET", "/render/" + job + "/frames", t),
           status("GET", "/render", t)]
    for name, t in tokens.items()}}))
"""


def test_a_nodes_credentials_taken_from_its_container_cannot_submit_cancel_or_read(
    stack: ComposeStack, api: FarmAPI
) -> None:
    """Issue 21's test: the node holds no FARM_TOKEN; its own credential and the join token,
    read from inside it, are refused every submit, cancel and read."""
    api.wait_nodes(3)
    job_id = api.render("demo.blend", "1-2", batch_size=1)
    container = stack.containers("render-node")[0]
    code, out = container.exec_run(["python3", "-c", STOLEN, job_id])
    assert code == 0, out.decode()
    seen = json.loads(out)
    assert "FARM_TOKEN" not in seen["env"] and "FARM_JOIN_TOKEN_FILE" in seen["env"]
    assert seen["answers"] == {"credential": [403] * 4, "join": [403] * 4}, seen
    assert api.wait_job(job_id)["state"] == "completed"  # and the node renders all the same
    names = {t["name"] for t in api.http.get("/tokens").json() if t["revoked"] is None}
    assert {f"node@{host_of(n['url'])}:8100" for n in api.wait_nodes(3)} <= names


def test_scale_to_five_gives_five_healthy_nodes(stack: ComposeStack, api: FarmAPI) -> None:
    stack.up("--scale", "render-node=5")

    nodes = api.wait_nodes(5)

    running = [c for c in stack.containers("render-node") if c.status == "running"]
    assert len(running) == 5
    assert {host_of(n["url"]) for n in nodes} == {stack.container_ip(c) for c in running}
