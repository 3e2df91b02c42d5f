"""One error shape for both services: {"error": code, "detail": what is wrong and how to fix it}.

Raise a FarmError subclass anywhere; `install_error_handlers` turns it into the JSON response.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
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


# Codes for errors raised as Starlette's HTTPException (routing, body limits).
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer of both services."""

    error: str = Field(description="a short code: bad_request, unauthorized, not_found, ...")
    detail: str = Field(description="what is wrong, and how to fix it")


_ERROR_DESCRIPTIONS = {
    400: "bad input (frame spec, id, path, scene name...): the detail says which and how",
    401: "no 'Authorization: Bearer <token>' on a farm that has a token",
    403: "a wrong token",
    404: "no such job, frame, scene or endpoint",
    413: "body larger than the limit (--max-upload-mb for uploads, 1 MB for JSON)",
    415: "not a .blend file",
    422: "the body or a parameter does not match the schema",
    429: "too many requests or too many queued jobs (see Retry-After)",
}


def error_response(description: str) -> dict[str, Any]:
    """An OpenAPI error answer an operation gives beyond those every one can (409, 503)."""
    return {"description": description, "model": ErrorBody}


def binary_response(description: str, media_types: list[str]) -> dict[str, Any]:
    """An OpenAPI 200 answer that is a file, not JSON."""
    schema = {"type": "string", "format": "binary"}
    return {"description": description, "content": {t: {"schema": schema} for t in media_types}}


def document_errors(app: FastAPI) -> None:
    """Make `app`'s OpenAPI schema describe the error answers every operation can give, as
    JSON in the one error shape (FastAPI would give them the route's own media type, e.g.
    text/plain for a log, and its own 422 shape)."""
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = plain_openapi()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["ErrorBody"] = ErrorBody.model_json_schema()
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for item in schema.get("paths", {}).values():
            for method, operation in item.items():
                responses = operation.setdefault("responses", {})
                for code, description in _ERROR_DESCRIPTIONS.items():
                    if method == "head":  # answers to HEAD carry no body
                        responses[str(code)] = {"description": description}
                    else:
                        responses[str(code)] = {"description": description, "content": content}
                if method == "head":
                    for answer in responses.values():
                        answer.pop("content", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def error_body(code: str, detail: str) -> dict[str, Any]:
    return {"error": code, "detail": detail}


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            why = (err.get("ctx") or {}).get("error", "invalid JSON")
            parts.append(f"the body is not valid JSON ({why}): send a JSON object")
            continue
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return ("; ".join(parts) or "invalid request") + " (the expected shapes are in /docs)"


def install_error_handlers(app: FastAPI, *, upload_hint: str | None = None) -> None:
    """`upload_hint`: how to send a file upload, for the service that takes one (said when a
    body cannot be parsed)."""

    @app.exception_handler(FarmError)
    async def _farm_error(request: Request, exc: FarmError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.detail), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", _validation_detail(exc)), 422)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        # A 5xx is a bug: logged with its traceback, answered in the one error shape.
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        detail = f"internal error ({type(exc).__name__}); the service log has the details"
        return JSONResponse(error_body("internal_error", detail), 500)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path}; see /docs"
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow") or "another method"
            detail = f"{request.method} is not allowed on {request.url.path}: use {allowed} (/docs)"
        elif exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = "the request body could not be parsed: send JSON with Content-Type " + (
                f"application/json ({upload_hint})" if upload_hint else "application/json"
            )
        elif (
            exc.status_code == 400
            and upload_hint
            and "multipart" in request.headers.get("content-type", "")
        ):
            # Starlette's multipart parser says what broke, not what to send instead.
            detail = f"{detail.rstrip('.')}: {upload_hint}"
        return JSONResponse(
            error_body(code, detail), status_code=exc.status_code, headers=exc.headers
        )
