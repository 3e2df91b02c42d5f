"""The `farm` command: start a local farm, render a scene with live progress, inspect jobs."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from farm_common.protocol import FINAL_JOB_STATES, BatchState, parse_tags
from farm_pack.pack import PackError, UnreadableBlend, hash_files, pack_shot
from farm_pack.ship import Upload, missing_files_message, pack_warnings, plan_upload, send
from orchestrator.access import Role
from orchestrator.client.api import (
    ClientSettings,
    FarmClient,
    FarmClientError,
    resolve_token,
)
from orchestrator.client.local import LocalCluster

console = Console()
err_console = Console(stderr=True)

FINAL_STATES = FINAL_JOB_STATES

EXIT_OK, EXIT_FAILED_FRAMES, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


def _client(args: argparse.Namespace) -> FarmClient:
    settings = ClientSettings()
    url = args.orchestrator or settings.orchestrator
    ca_cert = Path(args.ca_cert) if args.ca_cert else settings.ca_cert
    return FarmClient(url, resolve_token(args.token or settings.token), ca_cert=ca_cert)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def busy_nodes(job: dict[str, Any]) -> list[str]:
    return sorted(
        {
            str(b.get("node"))
            for b in job.get("batches", [])
            if b.get("node") and b.get("state") == BatchState.RUNNING
        }
    )


def job_summary_line(job: dict[str, Any], elapsed: float) -> str:
    frames = job.get("frames", {})
    done = int(frames.get("done", 0))
    rate = done / elapsed if elapsed > 0 else 0.0
    tiles, parts = job.get("tiles"), job.get("samples")
    split = ""
    if tiles:
        cols, rows = tiles["grid"]
        split = f"regions {tiles['done']}/{tiles['total']} ({cols}x{rows} a frame) | "
        split += f"frames {done}/{frames.get('total', 0)} | "
    elif parts:
        split = f"parts {parts['done']}/{parts['total']} ({parts['per_frame']} a frame, "
        split += f"{parts['samples']} samples) | frames {done}/{frames.get('total', 0)} | "
    line = (
        f"{job.get('state', '?')} | {split}{rate:.2f} frames/s | "
        f"ETA {format_seconds(job.get('eta_seconds'))} | "
        f"failed {frames.get('failed', 0)} | nodes busy {len(busy_nodes(job))}"
    )
    return f"{line}\n{job['waiting']}" if job.get("waiting") else line


def node_lines(job: dict[str, Any]) -> Table:
    table = Table(box=None, show_header=True, header_style="bold")
    table.add_column("node")
    table.add_column("batch")
    table.add_column("state")
    table.add_column("frames done", justify="right")
    per_node = job.get("nodes") or {}
    current: dict[str, dict[str, Any]] = {}
    for batch in job.get("batches", []):
        if batch.get("node") and batch.get("state") == BatchState.RUNNING:
            current[str(batch["node"])] = batch
    names = sorted(set(per_node) | set(current))
    for name in names:
        batch = current.get(name, {})
        done = per_node.get(name)
        table.add_row(
            name, str(batch.get("frames", "-")), str(batch.get("state", "idle")), str(done or 0)
        )
    return table


class Downloader:
    """Fetches collected frames into the output folder, each once."""

    def __init__(self, client: FarmClient, job_id: str, out_dir: Path) -> None:
        self.client = client
        self.job_id = job_id
        self.out_dir = out_dir
        self.fetched: set[int] = set()
        self.seen_done = -1

    def poll(self, done_count: int) -> None:
        if done_count == self.seen_done:
            return
        for item in self.client.frame_states(self.job_id, state="done"):
            frame = int(item["frame"])
            if frame not in self.fetched:
                self.client.download_frame(self.job_id, frame, self.out_dir)
                self.fetched.add(frame)
        self.seen_done = done_count


def cmd_render(args: argparse.Namespace) -> int:
    client = _client(args)
    scene_arg: str = args.scene
    path = Path(scene_arg)
    submit: dict[str, Any] = {}
    if scene_arg.startswith("sha256:"):
        submit["scene"] = scene_arg
    elif path.is_file():
        try:
            shipped = ship_shot(client, path, args)
        except UnreadableBlend as exc:
            # Nothing to trace: the .blend alone, and the nodes say what it lacks.
            err_console.print(f"[yellow]{exc}; sending the file alone, without dependencies")
            shipped = {"scene": client.upload_scene(path)}
        if shipped is None:
            return EXIT_ERROR
        submit.update(shipped)
    else:
        # Not a local file: a name in the farm's shared scenes folder, rendered in place.
        console.print(f"[yellow]{scene_arg} is not a local file; using the farm's scenes folder")
        submit["scene"] = scene_arg
    job_id = client.submit(
        submit.pop("scene", None),
        args.frames,
        batch_size=args.batch_size,
        fmt=args.format,
        priority=args.priority,
        video=args.video,
        blender_version=args.blender_version,
        device=args.device,
        allow_missing=args.allow_missing,
        tiles=args.tiles,
        tile_margin=args.tile_margin,
        split_samples=args.split_samples,
        tags=args.tags,
        after=_ids(args.after),
        **submit,
    )
    out_dir = Path(args.out) if args.out else Path("renders") / job_id
    console.print(f"job [bold]{job_id}[/] submitted: {client.url}/render/{job_id}")
    if args.no_wait:
        return EXIT_OK
    return follow(client, job_id, out_dir, download=not args.no_download)


def ship_shot(client: FarmClient, blend: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    """Pack the shot with its dependencies and send the farm the files it lacks; returns what
    `submit` takes (the manifest, warnings), or None when the shot must not go (missing files)."""
    project = Path(args.project) if args.project else None
    with pack_shot(blend, project) as pack:
        console.print(f"packing {blend} (project folder {pack.project})")
        hash_files(pack)
        for outside in pack.outside:
            console.print(f"[yellow]outside the project, packed too: {outside}")
        if pack.missing:
            for missing in pack.missing:
                err_console.print(f"[red]missing: {missing}")
            if not args.allow_missing:
                err_console.print(
                    f"[red]{missing_files_message(pack)}: not submitted. Restore them, or "
                    "render without them with --allow-missing"
                )
                return None
        upload = plan_upload(client, pack)
        console.print(
            f"{len(pack.files)} files, {pack.total_bytes / 1e6:.1f} MB; on the farm already: "
            f"{upload.held_files} files, {upload.held_bytes / 1e6:.1f} MB; "
            f"sending {len(upload.files)} files, {upload.bytes / 1e6:.1f} MB"
        )
        if upload.files:
            upload_files(client, upload)
        return {"manifest": pack.manifest, "asset_warnings": pack_warnings(pack)}


def upload_files(client: FarmClient, upload: Upload) -> None:
    progress = Progress(
        TextColumn("[bold]uploading"),
        BarColumn(bar_width=40),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("upload", total=upload.bytes)
        send(client, upload, lambda n: progress.advance(task, n))


def follow(client: FarmClient, job_id: str, out_dir: Path, download: bool = True) -> int:
    downloader = Downloader(client, job_id, out_dir) if download else None
    started = time.monotonic()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=40),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        console=console,
    )
    task = progress.add_task(f"job {job_id[:12]}", total=None)
    job: dict[str, Any] = {}
    try:
        with Live(Group(progress), console=console, refresh_per_second=4) as live:
            while True:
                job = client.job(job_id)
                frames = job.get("frames", {})
                elapsed = time.monotonic() - started
                # A split job's bar counts its pieces: a still fills in as they come.
                bar = job.get("tiles") or job.get("samples") or frames
                progress.update(task, total=bar.get("total"), completed=bar.get("done", 0))
                live.update(Group(progress, Text(job_summary_line(job, elapsed)), node_lines(job)))
                if downloader:
                    downloader.poll(int(frames.get("done", 0)))
                if job.get("state") in FINAL_STATES:
                    break
                time.sleep(0.5)
    except KeyboardInterrupt:
        err_console.print(
            f"\nstopped following; the job goes on. `farm status {job_id}` to check, "
            f"`farm cancel {job_id}` to stop it"
        )
        return EXIT_INTERRUPTED
    console.print()
    return report_final(job, out_dir if downloader else None, time.monotonic() - started)


def report_final(job: dict[str, Any], out_dir: Path | None, elapsed: float) -> int:
    frames = job.get("frames", {})
    state = job.get("state")
    console.print(
        f"job {job.get('id')} {state}: {frames.get('done', 0)}/{frames.get('total', 0)} frames "
        f"in {format_seconds(elapsed)}" + (f", saved in {out_dir}/" if out_dir else "")
    )
    failed = job.get("failed_frames") or []
    if failed:
        table = Table(title="failed frames", header_style="bold red")
        table.add_column("frame", justify="right")
        table.add_column("error")
        for item in failed[:50]:
            table.add_row(str(item.get("frame")), str(item.get("error", "")))
        console.print(table)
    if state == "completed":
        return EXIT_OK
    if state == "failed" or frames.get("failed"):
        return EXIT_FAILED_FRAMES
    return EXIT_ERROR


def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    if not args.id:
        table = Table(title="jobs", header_style="bold")
        for column in ("id", "scene", "state", "done", "failed", "total", "progress"):
            table.add_column(column)
        for job in client.jobs():
            frames = job.get("frames", {})
            table.add_row(
                str(job.get("id")),
                str(job.get("scene_name") or job.get("scene", "")),
                str(job.get("state")),
                str(frames.get("done", "")),
                str(frames.get("failed", "")),
                str(frames.get("total", "")),
                f"{float(job.get('progress', 0)) * 100:.0f}%",
            )
        console.print(table)
        return EXIT_OK
    if args.watch:
        return follow(client, args.id, Path("."), download=False)
    job = client.job(args.id)
    frames = job.get("frames", {})
    console.print(
        f"[bold]{job['id']}[/] {job.get('state')}  {frames.get('done', 0)}/"
        f"{frames.get('total', 0)} done, {frames.get('failed', 0)} failed, "
        f"{frames.get('rendering', 0)} rendering, ETA {format_seconds(job.get('eta_seconds'))}"
    )
    table = Table(header_style="bold")
    for column in ("frames", "node", "state", "attempts"):
        table.add_column(column)
    for batch in job.get("batches", [])[-40:]:
        table.add_row(
            str(batch.get("frames")),
            str(batch.get("node") or "-"),
            str(batch.get("state")),
            str(batch.get("attempts", "")),
        )
    console.print(table)
    for item in (job.get("failed_frames") or [])[:20]:
        console.print(f"[red]frame {item.get('frame')}: {item.get('error')}")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    client = _client(args)
    job = client.cancel(args.id)
    console.print(f"job {args.id}: {job.get('state', 'cancelled')}")
    return EXIT_OK


def cmd_requeue(args: argparse.Namespace) -> int:
    client = _client(args)
    answer = client.requeue(args.id, args.frames)
    console.print(
        f"job {args.id}: frames {answer['requeued']} ({answer['frames']}) back in the queue; "
        f"the job is {answer['state']}"
    )
    if args.no_wait:
        return EXIT_OK
    out_dir = Path(args.out) if args.out else Path("renders") / args.id
    return follow(client, args.id, out_dir, download=not args.no_download)


def cmd_video(args: argparse.Namespace) -> int:
    client = _client(args)
    video_id = client.video(args.id, args.frames, args.fps, _ids(args.after))
    console.print(
        f"video job [bold]{video_id}[/] of job {args.id}: {client.url}/render/{video_id} "
        "(it starts once that job completed)"
    )
    if args.no_wait:
        return EXIT_OK
    code = follow(client, video_id, Path("."), download=False)
    if code != EXIT_OK:
        job = client.job(video_id)
        err_console.print(f"[red]no video: {job.get('error')}")
        return code
    target = Path(args.out) if args.out else Path("renders") / f"{video_id}.mp4"
    client.download_video(video_id, target)
    console.print(f"video saved as {target}")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    if not args.yes:
        answer = input(f"delete job {args.id} and its frames from the farm for good? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            console.print("nothing deleted")
            return EXIT_OK
    gone = _client(args).delete(args.id)
    console.print(f"job {args.id} deleted: {gone['files']} files, {gone['bytes']} bytes freed")
    return EXIT_OK


def cmd_token(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.action == "create":
        made = client.create_token(args.name, args.role)
        console.print(
            f"token {made['name']!r} (role {made['role']}) made: it is shown this once, the "
            "farm keeps only a hash of it"
        )
        print(made["token"])  # alone on the last line: scripts take it from there
        return EXIT_OK
    if args.action == "revoke":
        gone = client.revoke_token(args.name)
        console.print(f"token {gone['name']!r} (role {gone['role']}) revoked")
        return EXIT_OK
    table = Table(title="tokens", header_style="bold")
    for column in ("name", "role", "node", "made", "by", "revoked"):
        table.add_column(column)
    for row in client.tokens():
        table.add_row(
            row["name"], row["role"], row.get("url") or "", _when(row["created"]),
            row.get("created_by") or "", _when(row.get("revoked")),
        )  # fmt: skip
    console.print(table)
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    table = Table(title="audit log, newest first", header_style="bold")
    for column in ("when", "who", "role", "action", "target", "status"):
        table.add_column(column)
    for row in _client(args).audit(args.who, args.limit):
        table.add_row(
            _when(row["at"]), row["who"], row["role"], row["action"], row.get("target") or "",
            str(row["status"]),
        )  # fmt: skip
    console.print(table)
    return EXIT_OK


def _when(at: float | None) -> str:
    return "" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def cmd_node(args: argparse.Namespace) -> int:
    node = _client(args).node_action(args.url, args.action)
    console.print(f"node {node['url']}: {node['state']}")
    return EXIT_OK


def cmd_nodes(args: argparse.Namespace) -> int:
    client = _client(args)
    table = Table(title="nodes", header_style="bold")
    columns = "url name state slots busy batch frames seen blender devices tags sandbox"
    for column in columns.split():
        table.add_column(column)
    for node in client.nodes():
        seen = node.get("last_seen_seconds_ago")
        table.add_row(
            str(node.get("url")),
            str(node.get("name") or ""),
            str(node.get("state")),
            str(node.get("slots", "")),
            str(node.get("busy", "")),
            str(node.get("current_batch") or "-"),
            str(node.get("frames_rendered", 0)),
            f"{seen:.0f} s ago"
            if isinstance(seen, int | float)
            else str(node.get("last_seen", "")),
            str(node.get("blender_version") or "")
            + (" (bpy)" if node.get("engine") == "bpy" else ""),
            ", ".join(dict.fromkeys(str(d) for d in node.get("devices") or [])),
            ",".join(str(t) for t in node.get("tags") or []),
            _sandbox(node.get("sandbox")),
        )
    console.print(table)
    return EXIT_OK


def _ids(text: str | None) -> list[str] | None:
    """--after's job ids: 'a1,b2' -> ['a1', 'b2'] (None: not given)."""
    return [j.strip() for j in text.split(",") if j.strip()] if text else None


def _tags(text: str) -> list[str]:
    try:
        return parse_tags(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _sandbox(said: object) -> str:
    """A node whose Blender runs unsandboxed stands out."""
    if said == "none":
        return "[bold red]none[/]"
    return str(said or "?")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_up(args: argparse.Namespace) -> int:
    cluster = LocalCluster(
        nodes=args.nodes,
        port=args.port,
        data_dir=Path(args.data_dir),
        scenes_dir=Path(args.scenes_dir),
        blender=args.blender,
        threads=args.threads,
        token=ClientSettings().token,
    )
    console.print(f"starting an orchestrator and {args.nodes} render nodes ...")
    # Ctrl-C and SIGTERM both end the wait below; the cluster is then stopped in `finally`.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        cluster.start()
        console.print(
            f"farm up: [bold]{cluster.url}[/] with {args.nodes} nodes "
            f"({cluster.threads_per_node()} threads each); logs in {cluster.data_dir / 'logs'}\n"
            f"dashboard: {cluster.url}/?token={cluster.token}\n"
            f"token saved in {cluster.data_dir / 'token'} (the farm command reads it)\n"
            "render with: farm render scenes/demo.blend --frames 1-24    Ctrl-C stops the farm"
        )
        while cluster.alive():
            time.sleep(0.5)
        err_console.print("a farm process exited; stopping the rest")
        return EXIT_ERROR
    except KeyboardInterrupt:
        console.print("\nstopping the farm ...")
        return EXIT_OK
    except (RuntimeError, TimeoutError) as exc:
        err_console.print(f"[red]{exc}")
        return EXIT_ERROR
    finally:
        cluster.stop()


def build_parser() -> argparse.ArgumentParser:
    # --orchestrator and --token work after any sub-command, as the contract writes them.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--orchestrator", help="orchestrator URL (FARM_ORCHESTRATOR)")
    common.add_argument("--token", help="bearer token (FARM_TOKEN, or .farm/token of farm up)")
    common.add_argument(
        "--ca-cert", help="trust this CA (PEM) for an https:// orchestrator (FARM_CA_CERT)"
    )
    parser = argparse.ArgumentParser(prog="farm", description="Blender render farm client")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser(
        "up", parents=[common], help="start an orchestrator and N render nodes on this machine"
    )
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--data-dir", default=".farm")
    up.add_argument("--scenes-dir", default="scenes")
    up.add_argument(
        "--blender",
        help="the nodes' Blender: bpy (Blender 5 as a module, warm slots), bpy:PYTHON, or a "
        "blender executable (FARM_BLENDER; default: bpy when installed, else blender on PATH)",
    )
    up.add_argument("--threads", type=int, help="threads per node (default: cores / nodes)")
    up.set_defaults(func=cmd_up)

    render = sub.add_parser(
        "render", parents=[common], help="upload a scene, render frames, download them"
    )
    render.add_argument(
        "scene", help="a .blend file, a name in the farm's scenes folder, or sha256:"
    )
    render.add_argument("--frames", required=True, help="e.g. 1-250, 1-100x5, 1,3,7")
    render.add_argument("--out", help="folder for the frames (default: renders/<job id>)")
    render.add_argument("--batch-size", type=int, help="frames per batch (default: automatic)")
    render.add_argument(
        "--format",
        help="PNG, JPEG, OPEN_EXR, TIFF ... (default: the scene's own output settings)",
    )
    render.add_argument(
        "--project",
        help="the shot's project folder: files outside it are packed apart and listed "
        "(default: the folder the shot's relative paths reach)",
    )
    render.add_argument(
        "--allow-missing",
        action="store_true",
        help="submit although files the shot needs are missing, and let frames render "
        "without them (default: refuse, naming them)",
    )
    render.add_argument("--priority", type=int, help="higher runs first (default 0)")
    render.add_argument("--video", action="store_true", help="also encode a preview mp4")
    render.add_argument(
        "--blender-version",
        help="only nodes running this Blender render the job: 4.2 takes any 4.2.x (default: "
        "any node; a farm of mixed versions renders the frames with different Blenders)",
    )
    render.add_argument(
        "--device",
        choices=["cpu", "gpu"],
        help="only nodes rendering on a GPU (gpu) or on the CPU (cpu) render the job "
        "(default: any node)",
    )
    render.add_argument(
        "--tiles",
        type=int,
        default=1,
        metavar="N",
        help="split every frame in N regions (9: 3x3, 16: 4x4) rendered on as many slots and "
        "stitched: a still on many nodes (default 1, the whole frame)",
    )
    render.add_argument(
        "--tile-margin",
        type=int,
        metavar="PX",
        help="pixels rendered around each region and cut off when stitching, so a denoiser "
        "sees past its edges (default: 32 where the scene denoises with Cycles, else 0)",
    )
    render.add_argument(
        "--after",
        metavar="JOB,JOB",
        help="start once these jobs completed (and fail if one fails or is cancelled)",
    )
    render.add_argument(
        "--tags",
        type=_tags,
        metavar="TAG,TAG",
        help="render only on nodes that have all these tags (render-node --tags): gpu,highmem",
    )
    render.add_argument(
        "--split-samples",
        type=int,
        default=1,
        metavar="N",
        help="split every frame's Cycles samples in N parts rendered whole on as many slots, "
        "merged and saved as Blender saves the frame: no seams (Cycles, denoising off; "
        "default 1)",
    )
    render.add_argument("--no-wait", action="store_true", help="submit and return")
    render.add_argument("--no-download", action="store_true", help="leave frames on the farm")
    render.set_defaults(func=cmd_render)

    status = sub.add_parser("status", parents=[common], help="list jobs, or show one")
    status.add_argument("id", nargs="?")
    status.add_argument("--watch", action="store_true", help="live progress until it ends")
    status.set_defaults(func=cmd_status)

    requeue = sub.add_parser(
        "requeue",
        parents=[common],
        help="render frames of a job again: its failed ones (and a cancelled job's unrendered "
        "ones, which resumes it), or those of --frames",
    )
    requeue.add_argument("id")
    choice = requeue.add_mutually_exclusive_group()
    choice.add_argument("--frames", help="these frames, done ones too: '10-20' (default: --failed)")
    choice.add_argument("--failed", action="store_true", help="every frame not done (the default)")
    requeue.add_argument("--out", help="folder for the frames (default: renders/<job id>)")
    requeue.add_argument("--no-wait", action="store_true", help="requeue and return")
    requeue.add_argument("--no-download", action="store_true", help="leave frames on the farm")
    requeue.set_defaults(func=cmd_requeue)

    video = sub.add_parser(
        "video",
        parents=[common],
        help="encode a job's frames to an mp4 on the farm, once the job completed (a job of "
        "its own)",
    )
    video.add_argument("id", help="the render job")
    video.add_argument("--frames", help="which of its frames: '1-120' (default: all)")
    video.add_argument("--fps", type=int, default=24, help="frames a second (default: 24)")
    video.add_argument("--after", help="other jobs to wait for, comma-separated ids")
    video.add_argument("--out", help="the mp4 to save (default: renders/<video job id>.mp4)")
    video.add_argument("--no-wait", action="store_true", help="submit and return")
    video.set_defaults(func=cmd_video)

    cancel = sub.add_parser("cancel", parents=[common], help="cancel a job on every node")
    cancel.add_argument("id")
    cancel.set_defaults(func=cmd_cancel)

    delete = sub.add_parser(
        "delete", parents=[common], help="remove an ended job and its frames from the farm"
    )
    delete.add_argument("id")
    delete.add_argument("--yes", action="store_true", help="do not ask first")
    delete.set_defaults(func=cmd_delete)

    token = sub.add_parser("token", help="make, list and revoke the farm's tokens (admin)")
    token_actions = token.add_subparsers(dest="action", required=True)
    create = token_actions.add_parser(
        "create", parents=[common], help="a new token; printed alone on the last line"
    )
    create.add_argument("name", help="who holds it: a user or a machine")
    create.add_argument(
        "--role", required=True, choices=[role.value for role in Role],
        help="admin: everything; submit: submit, act on its own jobs, read all; view: read "
        "only; node: a join token for render nodes",
    )  # fmt: skip
    create.set_defaults(func=cmd_token)
    listing = token_actions.add_parser("list", parents=[common], help="every token, no secrets")
    listing.set_defaults(func=cmd_token)
    revoke = token_actions.add_parser("revoke", parents=[common], help="refuse it from now on")
    revoke.add_argument("name")
    revoke.set_defaults(func=cmd_token)

    audit = sub.add_parser("audit", parents=[common], help="who changed what, newest first")
    audit.add_argument("--who", help="one token's entries")
    audit.add_argument("--limit", type=int, default=50, help="entries shown (default: 50)")
    audit.set_defaults(func=cmd_audit)

    nodes = sub.add_parser("nodes", parents=[common], help="list render nodes")
    nodes.set_defaults(func=cmd_nodes)

    node = sub.add_parser("node", help="drain, pause or resume one render node")
    actions = node.add_subparsers(dest="action", required=True)
    for action, says in (
        ("drain", "finish its batches, then take no new ones"),
        ("pause", "stop now: its batches go back to the queue"),
        ("resume", "take batches again"),
    ):
        one = actions.add_parser(action, parents=[common], help=says)
        one.add_argument("url", help="the node's URL, as `farm nodes` lists it")
        one.set_defaults(func=cmd_node)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # BAT logs each missing file as it traces; `farm render` lists them itself.
    logging.getLogger("blender_asset_tracer").setLevel(logging.ERROR)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (FarmClientError, PackError) as exc:
        err_console.print(f"[red]error:[/] {exc}")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
