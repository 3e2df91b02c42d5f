"""`render-node`: a flag per NodeSettings field (each also read from FARM_*), then serve."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import uvicorn

from farm_common import settings_cli
from farm_common.auth import redact_access_log, warn_if_open
from farm_common.logs import configure_logging
from farm_common.tls import TlsSettingError, client_context, server_options
from render_node import __version__
from render_node.api import create_app
from render_node.devices import DeviceError
from render_node.sandbox import SandboxUnavailable
from render_node.settings import NodeSettings

log = logging.getLogger("render_node")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="render-node",
        description="Blender farm render node: renders frames with headless Blender over HTTP. "
        "A flag not given is read from its FARM_* environment variable.",
    )
    settings_cli.add_settings_flags(parser, NodeSettings)
    parser.add_argument("--version", action="version", version=f"render-node {__version__}")
    return parser


def parse_settings(argv: Sequence[str] | None = None) -> NodeSettings:
    return settings_cli.parse_settings(build_parser(), NodeSettings, argv)


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_settings(argv)
    configure_logging(settings.log_level, settings.log_format)
    warn_if_open(log, settings.host, settings.token, "run Blender on this machine")
    try:
        https = server_options(settings.tls_cert, settings.tls_key)
        client_context(settings.ca_cert)
        app = create_app(settings)
    except (SandboxUnavailable, DeviceError, TlsSettingError) as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    # uvicorn turns SIGTERM/SIGINT into a graceful shutdown, which runs the lifespan's exit:
    # every Blender process group is killed and reaped before the process ends.
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=3,
        log_config=None,
        **https,
    )
    redact_access_log()
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
