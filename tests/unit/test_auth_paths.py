"""The token check reads the path the router routes on, and the log redaction reads query keys
as the server decodes them."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from farm_common.auth import check_bearer, redact
from farm_common.errors import Unauthorized


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
        ("GET /?TOKEN=s3cret HTTP/1.1", "GET /?TOKEN=***"),
        ("/jobs?x=1&access%5Ftoken=s3cret", "/jobs?x=1&access%5Ftoken=***"),
        ("/jobs?a=1;token=s3cret", "/jobs?a=1;token=***"),
        ("/jobs?tokens=1&tok=2", "/jobs?tokens=1&tok=2"),
    ],
)
def test_redaction_compares_decoded_query_keys(line: str, expected: str) -> None:
    assert redact(line).startswith(expected)
    if "***" in expected:
        assert "s3cret" not in redact(line)
