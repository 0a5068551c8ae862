"""OpenAI-format error bodies and the exceptions the router maps onto them.

Every error the router (or the simulator) returns is a JSON object
``{"error": {"message", "type", "param", "code"}}`` so that OpenAI clients surface a readable
message instead of a parse failure.
"""

from __future__ import annotations

import json
from typing import Any

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "bad_gateway_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """The OpenAI error object for ``status`` with a human-readable ``message``."""
    return {
        "error": {
            "message": message,
            "type": _TYPES.get(status, "server_error"),
            "param": param,
            "code": status,
        }
    }


def error_bytes(status: int, message: str, param: str | None = None) -> bytes:
    """``error_body`` serialised as UTF-8 JSON."""
    return json.dumps(error_body(status, message, param)).encode()


class RequestError(Exception):
    """A request the router refuses; carries the HTTP status and optional headers."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.headers = headers or {}
