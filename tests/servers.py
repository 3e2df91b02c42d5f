"""Real servers on loopback ports for integration tests (no mocks of HTTP).

Two ways, both wait until `GET /health` answers 200 before handing over:

- `serve_app(app)`: any ASGI app (FastAPI, Starlette...) under `uvicorn.Server` in a background
  thread of the test process, on a socket bound before the server starts (no port race)::

      with serve_app(create_app(settings)) as url:
          httpx.get(url + "/health")

  Pass `sock=reserve_socket()` when the app must know its own port before it is created.
  The app's lifespan runs (startup before the `with` body, shutdown when it ends).

- `run_cli([...argv...], port=free_port())`: a command (e.g. `python -m render_node --port N`)
  as a subprocess in its own session; stops it with SIGTERM (SIGKILL after a grace period)::

      port = free_port()
      with run_cli([sys.executable, "-m", "render_node", "--port", str(port)], port=port) as srv:
          httpx.get(srv.url + "/health"); srv.process.pid

Both raise `ServerFailed` with the server's output when it does not come up.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

LOOPBACK = "127.0.0.1"


class ServerFailed(RuntimeError):
    """The server did not become healthy in time (the message carries what it said)."""


def reserve_socket(host: str = LOOPBACK) -> socket.socket:
    """A listening socket on a free port: hand it to `serve_app(sock=...)`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    return sock


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free a moment ago (for subprocesses, which must bind it themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def handler_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` served by a threaded http.server on a loopback port; yields its base URL."""
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def wait_for_health(
    url: str,
    *,
    timeout: float = 15.0,
    path: str = "/health",
    headers: Mapping[str, str] | None = None,
    alive: Any = None,
    verify: Any = True,
) -> None:
    """Poll `url + path` until 200; `alive()` returning False aborts early (a dead server)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise ServerFailed(f"server at {url} exited before it was healthy")
        try:
            response = httpx.get(
                url + path, headers=dict(headers or {}), timeout=1.0, verify=verify
            )
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.05)
    raise ServerFailed(f"{url}{path} not healthy after {timeout} s: {last}")


@contextlib.contextmanager
def serve_app(
    app: Any,
    *,
    sock: socket.socket | None = None,
    health_path: str = "/health",
    headers: Mapping[str, str] | None = None,
    startup_timeout: float = 15.0,
    log_level: str = "warning",
) -> Iterator[str]:
    """Serve `app` in a thread on `sock` (default: a fresh loopback port); yield its base URL."""
    sock = sock or reserve_socket()
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, lifespan="on", log_level=log_level, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://{host}:{port}"
    try:
        wait_for_health(
            url,
            timeout=startup_timeout,
            path=health_path,
            headers=headers,
            alive=thread.is_alive,
        )
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)


@dataclass
class CliServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, grace: float = 10.0) -> int:
        """SIGTERM, wait `grace` seconds, then SIGKILL the whole session; returns the code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        return self.process.returncode


@contextlib.contextmanager
def run_cli(
    argv: Sequence[str],
    *,
    port: int,
    host: str = LOOPBACK,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    health_path: str = "/health",
    headers: Mapping[str, str] | None = None,
    startup_timeout: float = 20.0,
    scheme: str = "http",
    verify: Any = True,
) -> Iterator[CliServer]:
    """Run `argv` (which must listen on `port`) until healthy; stop it when the block ends."""
    log_file = tempfile.NamedTemporaryFile(prefix="server-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        list(argv),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    server = CliServer(f"{scheme}://{host}:{port}", process, Path(log_file.name))
    try:
        try:
            wait_for_health(
                server.url,
                timeout=startup_timeout,
                path=health_path,
                headers=headers,
                alive=lambda: process.poll() is None,
                verify=verify,
            )
        except ServerFailed as exc:
            raise ServerFailed(f"{exc}\n--- output ---\n{server.output()[-4000:]}") from None
        yield server
    finally:
        server.stop()
        log_file.close()
        with contextlib.suppress(OSError):
            os.unlink(log_file.name)
