"""`orchestrator` command line: flags map onto OrchestratorSettings, then uvicorn serves the app."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import uvicorn

from farm_common.auth import redact_access_log, warn_if_open
from farm_common.logs import LOG_FORMATS, configure_logging
from orchestrator.api.app import create_app
from orchestrator.settings import OrchestratorSettings

log = logging.getLogger("orchestrator")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="orchestrator",
        description="Render farm orchestrator: splits jobs into batches for render nodes."
        " Every flag also reads FARM_<FLAG> (e.g. FARM_TOKEN, FARM_NODE=url1,url2).",
    )
    p.add_argument("--host", help="address to listen on (FARM_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (FARM_PORT, default 8000)")
    p.add_argument("--data-dir", help="SQLite + collected frames (FARM_DATA_DIR)")
    p.add_argument("--scenes-dir", help="folder of named scenes (FARM_SCENES_DIR)")
    p.add_argument(
        "--node", action="append", metavar="URL", help="static render node URL (repeatable)"
    )
    p.add_argument("--token", help="bearer token for clients and nodes (FARM_TOKEN)")
    p.add_argument(
        "--max-upload-mb", type=int, help="largest scene upload (FARM_MAX_UPLOAD_MB, default 4096)"
    )
    p.add_argument(
        "--max-queued-jobs",
        type=int,
        help="jobs queued or running at once (FARM_MAX_QUEUED_JOBS, default 1000)",
    )
    p.add_argument(
        "--rate-limit",
        type=float,
        help="POST /render per client and minute, 0 = off (FARM_RATE_LIMIT, default 600)",
    )
    p.add_argument(
        "--max-batch-seconds",
        type=float,
        help="a batch cut to a node's speed holds at most this much expected render time "
        "(FARM_MAX_BATCH_SECONDS, default 600)",
    )
    p.add_argument(
        "--max-sized-batch",
        type=int,
        help="... and at most this many frames (FARM_MAX_SIZED_BATCH, default 100)",
    )
    p.add_argument(
        "--max-polls-per-second",
        type=float,
        help="status polls of running batches, farm-wide: large farms poll each batch less "
        "often (FARM_MAX_POLLS_PER_SECOND, default 100)",
    )
    p.add_argument(
        "--single-process",
        action="store_true",
        default=None,
        help="run the scheduler on a thread of this process, not in a child process of its "
        "own: one PID, but status answers wait on a busy scheduler (FARM_SINGLE_PROCESS)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="text for people, json for log collectors (FARM_LOG_FORMAT; default text)",
    )
    return p


def settings_from_args(args: argparse.Namespace) -> OrchestratorSettings:
    overrides: dict[str, Any] = {
        key: value
        for key, value in vars(args).items()
        if value is not None and key in OrchestratorSettings.model_fields
    }
    return OrchestratorSettings(**overrides)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    configure_logging(args.log_level, settings.log_format)
    warn_if_open(log, settings.host, settings.token, "submit renders and read every frame")
    app = create_app(settings, engine_process=not settings.single_process, log_level=args.log_level)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
        log_config=None,
    )
    redact_access_log()  # after Config: it (re)configures uvicorn's loggers
    server = uvicorn.Server(config)
    app.state.stop_server = lambda: setattr(server, "should_exit", True)
    server.run()
    # 1: the scheduler's process ended on its own (the lifespan says so in the log).
    sys.exit(getattr(app.state, "exit_code", 0))


if __name__ == "__main__":
    main()
