"""Users and roles on the orchestrator: every endpoint of its OpenAPI schema against every kind
of caller (no token, a wrong one, a revoked one, each role, a join token, a node's own
credential), tokens made, listed and revoked, jobs acted on only by their submitter or an
admin, and the audit log of it all."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.access import RULES, Rule, rule_for
from orchestrator.api.app import create_app
from render_node.api import create_app as create_node
from render_node.settings import NodeSettings
from tests.integration.conftest import FAKE_BLENDER, SCENES
from tests.orch_helpers import fast_settings
from tests.servers import serve_app

ADMIN = "admin-s3cret-token"
JOIN = "join-s3cret-token"
# FastAPI's own pages: not in the schema, under a rule all the same.
FASTAPI_PAGES = {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"),
                 ("GET", "/redoc")}  # fmt: skip
SAMPLE = {"job_id": "0123456789ab", "frame": "1", "tile": "0", "sha256": "0" * 64,
          "name": "nobody"}  # fmt: skip


class Farm:
    def __init__(self, url: str) -> None:
        self.url = url

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def token(self, name: str, role: str) -> str:
        with self.client(ADMIN) as admin:
            made = admin.post("/tokens", json={"name": name, "role": role})
        assert made.status_code == 201, made.text
        return str(made.json()["token"])


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[Farm]:
    settings = fast_settings(tmp_path, [], token=ADMIN, join_token=JOIN)
    with serve_app(create_app(settings)) as url:
        yield Farm(url)


def schema_operations(url: str) -> list[tuple[str, str]]:
    schema = httpx.get(url + "/openapi.json", headers={"Authorization": f"Bearer {ADMIN}"})
    assert schema.status_code == 200
    return [
        (method.upper(), path)
        for path, item in schema.json()["paths"].items()
        for method in item
        if method != "parameters"
    ]


def test_every_endpoint_of_the_schema_has_a_rule_and_every_rule_an_endpoint(farm: Farm) -> None:
    operations = set(schema_operations(farm.url))
    missing = operations - set(RULES)
    assert not missing, f"endpoints without an access rule (orchestrator/access.py): {missing}"
    assert set(RULES) - operations == FASTAPI_PAGES
    for method, template in operations:  # and a request reaches its own template's rule
        path = re.sub(r"\{([a-z0-9_]+)\}", lambda m: SAMPLE[m[1]], template)
        assert rule_for(method, path) == (RULES[(method, template)], template)


def expected(role: str | None, rule: Rule) -> set[int] | None:
    """What a caller of `role` gets: 401 / 403, or None for 'let through' (any other status)."""
    allowed = {
        "admin": set(Rule),
        "submit": {Rule.OPEN, Rule.VIEW, Rule.SUBMIT, Rule.OWN},
        "view": {Rule.OPEN, Rule.VIEW},
        "node": {Rule.OPEN, Rule.NODE},
    }
    if rule == Rule.OPEN:
        return None
    if role is None:
        return {401}
    if role in ("wrong", "revoked"):
        return {403}
    return None if rule in allowed[role] else {403}


def test_every_endpoint_answers_each_kind_of_caller_as_its_rule_says(farm: Farm) -> None:
    callers: dict[str, tuple[str | None, str | None]] = {
        "no token": (None, None),
        "a wrong token": ("not-a-token-of-this-farm", "wrong"),
        "admin (FARM_TOKEN)": (ADMIN, "admin"),
        "admin (made)": (farm.token("root2", "admin"), "admin"),
        "submit": (farm.token("ana", "submit"), "submit"),
        "view": (farm.token("vi", "view"), "view"),
        "join (FARM_JOIN_TOKEN)": (JOIN, "node"),
        "node (made)": (farm.token("rack1", "node"), "node"),
    }
    revoked = farm.token("gone", "submit")
    with farm.client(ADMIN) as admin:
        assert admin.delete("/tokens/gone").status_code == 200
        joined = admin.post("/nodes/register", json={"url": "http://127.0.0.1:9"})
    assert joined.status_code == 200 and joined.json().get("credential") is None  # an admin
    with farm.client(JOIN) as join:
        answer = join.post("/nodes/register", json={"url": "http://127.0.0.1:19"})
    assert answer.status_code == 200, answer.text
    callers["revoked"] = (revoked, "revoked")
    callers["a node's own credential"] = (answer.json()["credential"], "node")

    operations = schema_operations(farm.url) + sorted(FASTAPI_PAGES)
    wrong: list[str] = []
    through: dict[str, set[tuple[str, str]]] = {caller: set() for caller in callers}
    for method, template in operations:
        path = re.sub(r"\{([a-z0-9_]+)\}", lambda m: SAMPLE[m[1]], template)
        rule = RULES[(method, template)]
        for caller, (token, role) in callers.items():
            body: dict[str, Any] = {"json": {}} if method in ("POST", "PUT") else {}
            with farm.client(token) as client:
                status = client.request(method, path, **body).status_code
            want = expected(role, rule)
            if (want is None and status in (401, 403)) or (want and status not in want):
                wrong.append(f"{caller}: {method} {path} ({rule}) answered {status}, not {want}")
            if status not in (401, 403):
                through[caller].add((method, template))
    assert not wrong, "\n".join(wrong)
    # What the issue asks, whatever the rules table says: a view token changes nothing; a
    # node's credential reaches its heartbeat and goodbye only; a submitter no admin's work.
    assert all(method == "GET" for method, _ in through["view"])
    node_only = {("GET", "/health"), ("POST", "/nodes/register"), ("POST", "/nodes/leave")}
    assert through["a node's own credential"] == node_only == through["join (FARM_JOIN_TOKEN)"]
    admin_only = {op for op in operations if op[1].startswith(("/tokens", "/audit"))}
    admin_only |= {("POST", f"/nodes/{a}") for a in ("drain", "pause", "resume")}
    assert len(admin_only) == 7 and not admin_only & through["submit"]
    assert through["admin (made)"] == set(operations) == through["admin (FARM_TOKEN)"]
    assert through["no token"] == through["revoked"] == {("GET", "/health")}


def submit(client: httpx.Client, frames: str = "1-4") -> str:
    resp = client.post("/render", json={"scene": "demo.blend", "frames": frames})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def test_a_submitter_acts_on_its_own_jobs_and_an_admin_on_all(farm: Farm) -> None:
    ana, bo, vi = (farm.client(farm.token(n, r)) for n, r in
                   (("ana", "submit"), ("bo", "submit"), ("vi", "view")))  # fmt: skip
    with ana, bo, vi, farm.client(ADMIN) as admin:
        job = submit(ana)
        assert vi.get(f"/render/{job}").json()["submitted_by"] == "ana"  # everyone reads all
        refused = bo.delete(f"/render/{job}")
        assert refused.status_code == 403
        assert f"job {job} was submitted by 'ana'" in refused.json()["detail"]
        assert bo.post(f"/render/{job}/requeue", json={"failed": True}).status_code == 403
        assert vi.delete(f"/render/{job}").status_code == 403
        assert vi.post("/render", json={"scene": "demo.blend", "frames": "1"}).status_code == 403
        assert ana.delete(f"/render/{job}").json()["state"] == "cancelled"
        # A video job of ana's job is bo's own.
        video = bo.post(f"/render/{job}/video", json={"frames": "1"})
        assert video.status_code in (202, 409, 503), video.text
        other = submit(bo)
        assert admin.delete(f"/render/{other}").json()["state"] == "cancelled"
        assert admin.post(f"/render/{job}/delete").json()["deleted"] is True


def test_tokens_are_made_once_kept_hashed_listed_and_revoked(farm: Farm, tmp_path: Path) -> None:
    token = farm.token("ana", "submit")
    with farm.client(ADMIN) as admin, farm.client(token) as ana:
        assert ana.get("/whoami").json() == {"name": "ana", "role": "submit"}
        again = admin.post("/tokens", json={"name": "ana", "role": "view"})
        assert again.status_code == 409 and "revoke it first" in again.text
        for name in ("admin", "join", "node@10.0.0.5"):
            taken = admin.post("/tokens", json={"name": name, "role": "view"})
            assert taken.status_code == 400, taken.text
        bad = admin.post("/tokens", json={"name": "ana", "role": "root"})
        assert bad.status_code == 422
        listed = admin.get("/tokens").json()
        assert [(t["name"], t["role"], t["created_by"]) for t in listed] == [
            ("ana", "submit", "admin")
        ]
        assert token not in admin.get("/tokens").text
        assert admin.delete("/tokens/nobody").status_code == 404
        assert admin.delete("/tokens/admin").status_code == 400
        assert admin.delete("/tokens/ana").json()["revoked"] is not None
        refused = ana.get("/render")  # from the very next request
        assert refused.status_code == 403 and "'ana' was revoked" in refused.text
        # Revoked, the name can be given again.
        assert admin.post("/tokens", json={"name": "ana", "role": "view"}).status_code == 201
    # Nowhere in the database, its write-ahead log included.
    files = list((tmp_path / "orch").glob("farm.sqlite3*"))
    assert files and not any(token.encode() in f.read_bytes() for f in files)
    with sqlite3.connect(tmp_path / "orch" / "farm.sqlite3") as db:
        hashes = [row[0] for row in db.execute("SELECT hash FROM tokens")]
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)


def test_the_audit_log_says_who_changed_what_and_what_was_refused(farm: Farm) -> None:
    with farm.client(farm.token("ana", "submit")) as ana, farm.client(ADMIN) as admin:
        job = submit(ana)
        with farm.client(farm.token("bo", "submit")) as bo:
            assert bo.delete(f"/render/{job}").status_code == 403
            assert bo.post("/tokens", json={"name": "x", "role": "admin"}).status_code == 403
        ana.delete(f"/render/{job}")
        admin.delete("/tokens/bo")
        ana.get("/render")  # reads are not logged
        assert ana.get("/audit").status_code == 403
        log = admin.get("/audit").json()
    seen = [(e["who"], e["action"], e["target"], e["status"]) for e in reversed(log)]
    assert seen == [
        ("admin", "POST /tokens", "ana", 201),
        ("ana", "POST /render", job, 202),
        ("admin", "POST /tokens", "bo", 201),
        ("bo", "DELETE /render/{job_id}", job, 403),
        ("bo", "POST /tokens", None, 403),
        ("ana", "DELETE /render/{job_id}", job, 200),
        ("admin", "DELETE /tokens/{name}", "bo", 200),
    ]
    refusal = log[2]["detail"]  # newest first
    assert refusal and "may not POST /tokens" in refusal and "role admin" in refusal
    assert "submitted by 'ana'" in log[3]["detail"]
    with farm.client(ADMIN) as admin:
        only = admin.get("/audit", params={"who": "bo"}).json()
    assert {e["who"] for e in only} == {"bo"} and len(only) == 2


def test_a_node_credential_speaks_for_its_own_node_only(farm: Farm) -> None:
    with farm.client(JOIN) as join:
        first = join.post("/nodes/register", json={"url": "http://127.0.0.1:19"}).json()
        # The URL is held by a live node with a credential: not handed to another joiner.
        again = join.post("/nodes/register", json={"url": "http://127.0.0.1:19"})
        assert again.status_code == 409 and "own credential" in again.text
    with farm.client(first["credential"]) as node:
        assert node.post("/nodes/register", json={"url": "http://127.0.0.1:19"}).status_code == 200
        other = node.post("/nodes/register", json={"url": "http://127.0.0.1:20"})
        assert other.status_code == 403 and "cannot speak for" in other.text
        assert node.post("/nodes/leave", json={"url": "http://127.0.0.1:20"}).status_code == 403
        for method, path in (("GET", "/render"), ("POST", "/render"), ("GET", "/nodes"),
                             ("GET", "/render/0123456789ab/frames")):  # fmt: skip
            assert node.request(method, path, json={}).status_code == 403, path
    with farm.client(ADMIN) as admin:
        (listed,) = admin.get("/tokens").json()
        assert (listed["name"], listed["role"], listed["url"], listed["created_by"]) == (
            "node@127.0.0.1:19",
            "node",
            "http://127.0.0.1:19",
            "join",
        )
        admin.delete("/tokens/node@127.0.0.1:19")
    with farm.client(first["credential"]) as node:
        assert node.post("/nodes/register", json={"url": "http://127.0.0.1:19"}).status_code == 403


def test_a_joined_node_takes_requests_with_its_orchestrators_key_and_nothing_else(
    tmp_path: Path,
) -> None:
    """The render node's side of the matrix: every operation of its schema, with no token,
    wrong ones, the farm's admin token (a joined node is not given it), the join token, the
    node's own credential, and the work key it registered with (the orchestrator's)."""
    settings = NodeSettings(
        data_dir=tmp_path / "node", scenes_dir=SCENES, blender=str(FAKE_BLENDER),
        orchestrator="http://127.0.0.1:9", join_token=JOIN, heartbeat_seconds=60,
    )  # fmt: skip
    app = create_node(settings)
    credentials = app.state.credentials
    credentials.took("farm_the-nodes-own-credential")
    with serve_app(app) as url:
        schema = httpx.get(
            url + "/openapi.json", headers={"Authorization": f"Bearer {credentials.work_key}"}
        )
        assert schema.status_code == 200
        operations = [
            (method.upper(), re.sub(r"\{([a-z0-9_]+)\}", lambda m: SAMPLE.get(m[1], "x"), path))
            for path, item in schema.json()["paths"].items()
            for method in item
        ]
        assert len(operations) >= 12
        callers = {None: 401, "wrong": 403, ADMIN: 403, JOIN: 403,
                   "farm_the-nodes-own-credential": 403, credentials.work_key: None}  # fmt: skip
        for method, path in operations:
            for token, want in callers.items():
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                status = httpx.request(method, url + path, headers=headers, timeout=10).status_code
                if path == "/health" or want is None:
                    assert status not in (401, 403), (method, path, token, status)
                else:
                    assert status == want, (method, path, token, status)
