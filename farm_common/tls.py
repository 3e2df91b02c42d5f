"""HTTPS for both services and their clients: a service serves it with --tls-cert/--tls-key,
and every client (the orchestrator to its nodes and webhooks, a node to its orchestrator, the
`farm` command) verifies certificates, against --ca-cert too for a private CA."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

# Both services' settings (a flag each: --tls-cert, --tls-key, --ca-cert).
TlsCert = Annotated[
    Path | None,
    Field(
        description="serve HTTPS with this certificate (PEM; with --tls-key)",
        json_schema_extra={"metavar": "PATH"},
    ),
]
TlsKey = Annotated[
    Path | None,
    Field(description="the certificate's private key (PEM)", json_schema_extra={"metavar": "PATH"}),
]
CaCert = Annotated[
    Path | None,
    Field(
        description="trust this CA too (PEM) when verifying the certificates of the farm's "
        "other services (and webhooks): a private CA",
        json_schema_extra={"metavar": "PATH"},
    ),
]


class TlsSettingError(ValueError):
    """The TLS files cannot be used; says which and why."""


def client_context(ca_cert: Path | None) -> ssl.SSLContext:
    """A context that verifies servers' certificates and names: the system's CAs, and those of
    `ca_cert` (a PEM file) as well."""
    context = ssl.create_default_context()
    if ca_cert is not None:
        try:
            context.load_verify_locations(cafile=str(ca_cert))
        except (OSError, ssl.SSLError) as exc:
            raise TlsSettingError(f"--ca-cert {ca_cert}: not a readable PEM file ({exc})") from None
    return context


def server_options(cert: Path | None, key: Path | None) -> dict[str, Any]:
    """uvicorn.Config's HTTPS options, after checking the pair loads ({} for plain HTTP)."""
    if cert is None and key is None:
        return {}
    if cert is None or key is None:
        raise TlsSettingError("give both --tls-cert and --tls-key (PEM files), or neither")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise TlsSettingError(
            f"--tls-cert {cert} / --tls-key {key}: cannot use them ({exc})"
        ) from None
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
