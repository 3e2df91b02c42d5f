"""`render-node`: command-line flags onto NodeSettings (each also read from FARM_*), then serve."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import uvicorn

from farm_common.auth import redact_access_log, warn_if_open
from farm_common.logs import LOG_FORMATS, configure_logging
from render_node import __version__
from render_node.api import create_app
from render_node.settings import NodeSettings

log = logging.getLogger("render_node")

# flag -> (settings field, type, help)
FLAGS: list[tuple[str, str, type, str]] = [
    ("--host", "host", str, "address to bind (default 127.0.0.1; FARM_HOST)"),
    ("--port", "port", int, "port (default 8100; FARM_PORT)"),
    ("--data-dir", "data_dir", str, "jobs and uploaded scenes (default ./.farm/node-PORT)"),
    ("--scenes-dir", "scenes_dir", str, "folder of named scenes (default ./scenes)"),
    ("--blender", "blender", str, "Blender executable (default blender; FARM_BLENDER)"),
    ("--slots", "slots", int, "Blender processes at once (default 1)"),
    ("--threads", "threads", int, "render threads per Blender, 0 = all cores (default 0)"),
    ("--token", "token", str, "require 'Authorization: Bearer TOKEN' (FARM_TOKEN)"),
    ("--orchestrator", "orchestrator", str, "orchestrator URL to register with"),
    ("--advertise-url", "advertise_url", str, "this node's URL as the orchestrator sees it"),
    ("--max-upload-mb", "max_upload_mb", float, "largest scene upload (default 2048)"),
    (
        "--frame-timeout",
        "frame_timeout",
        float,
        "kill Blender after S seconds without output (default 1800)",
    ),
    (
        "--memory-limit-mb",
        "memory_limit_mb",
        int,
        "address-space (RLIMIT_AS) limit of each Blender in MB; Blender needs ~1 GB of it "
        "to start (default none; FARM_MEMORY_LIMIT_MB)",
    ),
    ("--heartbeat-seconds", "heartbeat_seconds", float, "registration interval (default 2)"),
]


def parse_settings(argv: list[str] | None = None) -> tuple[NodeSettings, str]:
    parser = argparse.ArgumentParser(
        prog="render-node",
        description="Blender farm render node: renders frames with headless Blender over HTTP. "
        "Every flag can also be set as FARM_<NAME> in the environment.",
    )
    for flag, dest, kind, help_text in FLAGS:
        parser.add_argument(flag, dest=dest, type=kind, default=None, help=help_text)
    parser.add_argument(
        "--allow-freestyle",
        dest="allow_freestyle",
        action="store_const",
        const=True,
        default=None,
        help="render scenes that enable Freestyle, which runs Python from the .blend "
        "(FARM_ALLOW_FREESTYLE; default: refused)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    parser.add_argument(
        "--log-format",
        dest="log_format",
        choices=LOG_FORMATS,
        default=None,
        help="text for people, json for log collectors (FARM_LOG_FORMAT; default text)",
    )
    parser.add_argument("--version", action="version", version=f"render-node {__version__}")
    args = parser.parse_args(argv)
    dests = [dest for _, dest, _, _ in FLAGS] + ["allow_freestyle", "log_format"]
    given: dict[str, Any] = {
        dest: getattr(args, dest) for dest in dests if getattr(args, dest) is not None
    }
    return NodeSettings(**given), args.log_level


def main(argv: list[str] | None = None) -> None:
    settings, log_level = parse_settings(argv)
    configure_logging(log_level, settings.log_format)
    warn_if_open(log, settings.host, settings.token, "run Blender on this machine")
    app = create_app(settings)
    # uvicorn turns SIGTERM/SIGINT into a graceful shutdown, which runs the lifespan's exit:
    # every Blender process group is killed and reaped before the process ends.
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=3,
        log_config=None,
    )
    redact_access_log()
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
