"""HTTPS between every party, with a private CA made in the test: the orchestrator and a node
serve it, verify each other against --ca-cert, the `farm` command too; a party without the CA
refuses to talk, and a half-given certificate stops a service at start."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from farm_common.tls import TlsSettingError, client_context, server_options
from tests.integration.farm_procs import FAKE_BLENDER, base_env
from tests.orch_helpers import BLEND, wait_job, wait_until
from tests.servers import free_port, run_cli

ADMIN = "admin-s3cret-token"
JOIN = "join-s3cret-token"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca_and_cert(folder: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, cert.pem, key.pem): a throwaway CA and a certificate it signed for 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("farm test CA")).issuer_name(_name("farm test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, encipher_only=False,
                          decipher_only=False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def node_argv(root: Path, port: int, orchestrator: str, *extra: str) -> list[str]:
    scenes = root / "scenes"
    return [
        sys.executable, "-m", "render_node", "--port", str(port),
        "--data-dir", str(root / f"node-{port}"), "--scenes-dir", str(scenes),
        "--blender", str(FAKE_BLENDER), "--sandbox", "none", "--blender-env", "FAKE_BLENDER_*",
        "--heartbeat-seconds", "1", "--orchestrator", orchestrator, "--join-token", JOIN,
        *extra,
    ]  # fmt: skip


def test_the_farm_talks_https_end_to_end_with_a_private_ca(tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_cert(tmp_path)
    (tmp_path / "scenes").mkdir()
    (tmp_path / "scenes" / "demo.blend").write_bytes(BLEND)
    tls = ("--tls-cert", str(cert), "--tls-key", str(key), "--ca-cert", str(ca))
    port, node_port, blind_port = free_port(), free_port(), free_port()
    env = {**base_env(), "FAKE_BLENDER_SECONDS": "0.05"}
    orchestrator_argv = [
        sys.executable, "-m", "orchestrator", "--port", str(port),
        "--data-dir", str(tmp_path / "orch"), "--scenes-dir", str(tmp_path / "scenes"),
        "--token", ADMIN, "--join-token", JOIN, *tls,
    ]  # fmt: skip
    trusted = client_context(ca)
    with (
        run_cli(orchestrator_argv, port=port, env=env, scheme="https", verify=trusted) as orch,
        run_cli(node_argv(tmp_path, node_port, orch.url, *tls), port=node_port, env=env,
                scheme="https", verify=trusted),
        # A node without the CA: it cannot verify the orchestrator, so it never joins.
        run_cli(node_argv(tmp_path, blind_port, orch.url, "--tls-cert", str(cert),
                          "--tls-key", str(key)),
                port=blind_port, env=env, scheme="https", verify=trusted) as blind,
        httpx.Client(base_url=orch.url, verify=trusted, timeout=10,
                     headers={"Authorization": f"Bearer {ADMIN}"}) as client,
    ):  # fmt: skip
        wait_until(lambda: len(client.get("/nodes").json()) == 1, 20, "the node to join")
        (node,) = client.get("/nodes").json()
        assert node["url"] == f"https://127.0.0.1:{node_port}"
        job = client.post("/render", json={"scene": "demo.blend", "frames": "1-4"}).json()["id"]
        assert wait_job(client, job, timeout=30)["state"] == "completed"
        assert client.get(f"/render/{job}/frames/3").content.startswith(b"\x89PNG")

        time.sleep(1.5)  # the blind node has tried a heartbeat or two by now
        assert len(client.get("/nodes").json()) == 1
        assert "CERTIFICATE_VERIFY_FAILED" in blind.output()
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(orch.url + "/health", timeout=5)  # the system's CAs do not know it
        with pytest.raises(httpx.HTTPError):  # plain HTTP gets no answer
            httpx.get(orch.url.replace("https", "http") + "/health", timeout=5)

        farm = [sys.executable, "-m", "orchestrator.client.cli", "status",
                "--orchestrator", orch.url, "--token", ADMIN]  # fmt: skip
        seen = subprocess.run([*farm, "--ca-cert", str(ca)], capture_output=True, text=True,
                              env=base_env(), timeout=60)  # fmt: skip
        assert seen.returncode == 0 and job in seen.stdout, seen.stdout + seen.stderr
        refused = subprocess.run(farm, capture_output=True, text=True, env=base_env(), timeout=60)
        assert refused.returncode != 0
        said = " ".join((refused.stdout + refused.stderr).split())
        assert "CERTIFICATE_VERIFY_FAILED" in said and "--ca-cert" in said, said
        assert "Traceback" not in said


def test_tls_files_that_cannot_be_used_stop_the_service_saying_why(tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_cert(tmp_path)
    with pytest.raises(TlsSettingError, match="give both --tls-cert and --tls-key"):
        server_options(cert, None)
    with pytest.raises(TlsSettingError, match="cannot use them"):
        server_options(cert, ca)  # a certificate is not its key
    with pytest.raises(TlsSettingError, match="not a readable PEM file"):
        client_context(tmp_path / "missing.pem")
    assert server_options(None, None) == {}
    assert server_options(cert, key) == {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--port", str(free_port()),
         "--data-dir", str(tmp_path / "orch"), "--tls-cert", str(cert)],
        capture_output=True, text=True, env=base_env(), timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "give both --tls-cert and --tls-key" in done.stderr
