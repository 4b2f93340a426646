"""The one error shape of the HTTP API: {"error": {"code", "message", "details"}}.

Also the one place where a service's refusals (``pizza.eventing.errors``: NotFound,
Conflict, Invalid, TooLarge, Unavailable) become HTTP answers: services raise them and
never import this module.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from pizza.eventing.errors import (
    Conflict,
    DomainError,
    Invalid,
    NotFound,
    TooLarge,
    Unavailable,
)
from pizza.eventing.outage import database_unavailable

log = logging.getLogger("pizza.web")

# Seconds a client is told to wait while the database is away (Retry-After).
RETRY_AFTER = 5


class ApiError(Exception):
    """Raise from a route to answer ``status`` with the CONTRACT's error shape."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


# The one place a service's refusal (eventing/errors.py) becomes an HTTP status.
DOMAIN_STATUS: dict[type[DomainError], int] = {
    NotFound: 404, Conflict: 409, Invalid: 422, TooLarge: 413, Unavailable: 503}


def domain_status(error: DomainError) -> int:
    """The status of a refusal: its kind's, or the nearest kind it derives from."""
    for kind in type(error).__mro__:
        if kind in DOMAIN_STATUS:
            return DOMAIN_STATUS[kind]
    return 400


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"error": {"code": code, "message": message, "details": details}},
    )


_unavailable_logged_at = -1e9


async def unavailable(_request: Request, error: Exception) -> JSONResponse:
    """The database is away: 503 with Retry-After, not a bare 500. Anything else that
    reaches here is a bug and goes on to the server's own 500 (logged with its trace)."""
    verdict = database_unavailable(error)
    if verdict is None:
        raise error
    global _unavailable_logged_at
    now = time.monotonic()
    if now - _unavailable_logged_at > 30.0:  # one line per outage, not one per request
        _unavailable_logged_at = now
        log.warning("answering 503: the database is unavailable: %s",
                    " ".join(str(error).split())[:300])
    what = "the service's database" if verdict == "database" else "a service it needs"
    response = error_response(503, "unavailable", f"{what} is unavailable; try again shortly")
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


def _document_malformed_bodies(app: FastAPI) -> None:
    """Every route that takes a JSON body may answer 400 malformed-json (the handler
    below): say so in its OpenAPI entry, once, when the document is first made."""
    make = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = make()
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                if isinstance(operation, dict) and "requestBody" in operation:
                    operation.setdefault("responses", {}).setdefault(
                        "400", {"description": "the body is not JSON"})
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    _document_malformed_bodies(app)
    # What a route meets when its database is unreachable: SQLAlchemy's wrapped driver
    # errors, a pool that hands out no connection, and the driver's bare socket errors.
    for error_class in (DBAPIError, PoolTimeout, OSError):
        app.add_exception_handler(error_class, unavailable)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message, error.details)

    @app.exception_handler(DomainError)
    async def refused(_request: Request, error: DomainError) -> JSONResponse:
        return error_response(domain_status(error), error.code, error.message, error.details)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        details = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "problem": e["msg"]}
            for e in error.errors()
        ]
        malformed = any(e["type"] == "json_invalid" for e in error.errors())
        return error_response(
            400 if malformed else 422,
            "malformed-json" if malformed else "invalid-request",
            "the body is not valid JSON" if malformed else "the request is not valid",
            details,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}
        response = error_response(error.status_code,
                                  codes.get(error.status_code, "http-error"), str(error.detail))
        response.headers.update(error.headers or {})
        if error.status_code == 405:
            response.headers["Allow"] = ", ".join(_allowed(request))
        return response


def _allowed(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first
    route's, and a path such as /api/orders has a GET and a POST route)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)
