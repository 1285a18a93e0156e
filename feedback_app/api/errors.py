"""One JSON shape for every API error: {"detail": ..., "code": ..., "errors": ...}."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from feedback_app.services.errors import RateLimited, ServiceError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        body: dict[str, Any] = {"detail": exc.message, "code": exc.code}
        if exc.details is not None:
            body["errors"] = exc.details
        response = Response(body, status=exc.status_code)
        if isinstance(exc, RateLimited):
            response["Retry-After"] = str(max(1, round(exc.retry_after)))
        return response
    return drf_exception_handler(exc, context)
