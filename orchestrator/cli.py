"""`orchestrator` command line: a flag per OrchestratorSettings field, then uvicorn serves."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import uvicorn

from farm_common import settings_cli
from farm_common.auth import redact_access_log, warn_if_open
from farm_common.logs import configure_logging
from farm_common.tls import TlsSettingError, client_context, server_options
from orchestrator.api.app import create_app
from orchestrator.settings import OrchestratorSettings

log = logging.getLogger("orchestrator")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description="Render farm orchestrator: splits jobs into batches for render nodes. "
        "A flag not given is read from its FARM_* environment variable.",
    )
    settings_cli.add_settings_flags(parser, OrchestratorSettings)
    return parser


def parse_settings(argv: Sequence[str] | None = None) -> OrchestratorSettings:
    return settings_cli.parse_settings(build_parser(), OrchestratorSettings, argv)


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_settings(argv)
    log_level = settings.log_level
    configure_logging(log_level, settings.log_format)
    warn_if_open(log, settings.host, settings.token, "submit renders and read every frame")
    try:
        https = server_options(settings.tls_cert, settings.tls_key)
        client_context(settings.ca_cert)
    except TlsSettingError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    app = create_app(settings, engine_process=not settings.single_process, log_level=log_level)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=5,
        log_config=None,
        **https,
    )
    redact_access_log()  # after Config: it (re)configures uvicorn's loggers
    server = uvicorn.Server(config)
    app.state.stop_server = lambda: setattr(server, "should_exit", True)
    server.run()
    # 1: the scheduler's process ended on its own (the lifespan says so in the log).
    sys.exit(getattr(app.state, "exit_code", 0))


if __name__ == "__main__":
    main()
