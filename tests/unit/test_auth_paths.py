"""The token check reads the path the router routes on, and the log redaction reads query keys
as the server decodes them."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import pytest
from starlette.requests import Request

from farm_common.auth import RedactSecrets, check_bearer, redact
from farm_common.errors import Unauthorized

ROOT = Path(__file__).resolve().parents[2]


def request(path: str, host: str) -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", host.encode())],
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
    }
    return Request(scope)


class UrlFromHost(Request):
    """Starlette before 1.0.1: the URL's path taken from a client's `Host: x/health?`."""

    @property
    def url(self):  # type: ignore[override]
        from starlette.datastructures import URL

        return URL("http://x/health?" + self.scope["path"])


def test_a_host_header_cannot_make_a_protected_path_look_open() -> None:
    crafted = UrlFromHost(request("/render", "x/health?").scope)
    assert crafted.url.path == "/health"  # what the old check read
    with pytest.raises(Unauthorized):
        check_bearer(crafted, "s3cret")


def test_the_open_path_stays_open() -> None:
    check_bearer(request("/health", "127.0.0.1:8000"), "s3cret")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /?tok%65n=s3cret&x=1 HTTP/1.1", "GET /?tok%65n=***&x=1 HTTP/1.1"),
        ('1.2.3.4 - "GET /?TOKEN=s3cret HTTP/1.1" 200', '1.2.3.4 - "GET /?TOKEN=*** HTTP/1.1" 200'),
        ("/jobs?x=1&access%5Ftoken=s3cret", "/jobs?x=1&access%5Ftoken=***"),
        ("/jobs?a=1;token=s3cret", "/jobs?a=1;token=***"),
        ("/jobs?Api_Key=s3cret&token=s3cret", "/jobs?Api_Key=***&token=***"),
        # The server reads `#` and `"` as part of the value: none of it is shown.
        ('GET /?token=ab"s3cret&x=1 HTTP/1.1', "GET /?token=***&x=1 HTTP/1.1"),
        ("GET /?token=ab#s3cret HTTP/1.1", "GET /?token=*** HTTP/1.1"),
        ("GET /?a=1?token=s3cret HTTP/1.1", "GET /?a=1?token=*** HTTP/1.1"),
        ("fetching 'http://node/?token=s3cret' now", "fetching 'http://node/?token=***' now"),
        ("/jobs?tokens=1&tok=2&x=token", "/jobs?tokens=1&tok=2&x=token"),
        ("why? token=1", "why? token=1"),
    ],
)
def test_redaction_hides_values_of_decoded_secret_keys_and_keeps_the_rest(
    line: str, expected: str
) -> None:
    assert redact(line) == expected


def test_the_access_log_filter_redacts_uvicorns_arguments() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/render?x=1&tok%65n=s3cret", "1.1", 200),
        None,
    )
    assert RedactSecrets().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /render?x=1&tok%65n=*** HTTP/1.1" 200'


def test_the_installed_starlette_builds_request_url_from_the_routed_path() -> None:
    """What starlette>=1.0.1 in pyproject.toml is for (CVE-2026-48710)."""
    assert request("/render", "x/health?").url.path == "/render"
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "starlette>=1.0.1" in pins


@pytest.mark.parametrize("service", ["orchestrator", "render-node"])
@pytest.mark.parametrize("token", ["change-me-local", "CHANGE-ME", "changeme"])
def test_a_token_once_published_as_an_example_is_refused_at_start(
    service: str, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """compose.yaml and the k8s Secret shipped change-me-local: a farm still started with it
    would be open to anyone who read them."""
    from orchestrator.cli import parse_settings as orchestrator_settings
    from render_node.cli import parse_settings as node_settings

    parse = orchestrator_settings if service == "orchestrator" else node_settings
    with pytest.raises(SystemExit) as stopped:
        parse(["--token", token])
    assert stopped.value.code == 2
    assert "published example" in capsys.readouterr().err
    assert parse(["--token", "a-secret-of-our-own"]).token == "a-secret-of-our-own"
