"""One error shape for both services: {"error": code, "detail": what is wrong and how to fix it}.

Raise a FarmError subclass anywhere; `install_error_handlers` turns it into the JSON response.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class FarmError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class BadRequest(FarmError):
    status_code = 400
    code = "bad_request"


class Unauthorized(FarmError):
    status_code = 401
    code = "unauthorized"


class Forbidden(FarmError):
    status_code = 403
    code = "forbidden"


class NotFound(FarmError):
    status_code = 404
    code = "not_found"


class Conflict(FarmError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(FarmError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMedia(FarmError):
    status_code = 415
    code = "unsupported_media_type"


class Unprocessable(FarmError):
    status_code = 422
    code = "invalid_request"


class TooManyRequests(FarmError):
    status_code = 429
    code = "too_many_requests"


class Unavailable(FarmError):
    status_code = 503
    code = "unavailable"


def error_body(code: str, detail: str) -> dict[str, Any]:
    return {"error": code, "detail": detail}


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FarmError)
    async def _farm_error(request: Request, exc: FarmError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.detail), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", _validation_detail(exc)), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path}; see /docs"
        return JSONResponse(
            error_body(code, detail), status_code=exc.status_code, headers=exc.headers
        )
