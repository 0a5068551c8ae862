"""The paths the router exposes, and the check every request path passes before routing.

Only the OpenAI endpoints below reach a backend; vLLM's other endpoints (``/reset_prefix_cache``,
``/v1/load_lora_adapter``, ``/metrics`` ...) are for operators, not clients. A path is forwarded
exactly as listed here, never as the client spelled it, and a path that is not plain (a ``.`` or
``..`` segment, percent-encoding of any kind such as ``%2e%2e`` or ``%252e``, a backslash or an
empty segment) is refused before routing, so no spelling can make the upstream client resolve
it elsewhere.
"""

from __future__ import annotations

from llmsvc.router.errors import RequestError

PARSED = ("/v1/chat/completions", "/v1/completions")
"""POST endpoints whose JSON body the router reads (model check, prompt for the policy)."""

PASSED = (
    "/v1/embeddings",
    "/v1/responses",
    "/v1/rerank",
    "/v1/score",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
)
"""Other POST endpoints forwarded with their body untouched."""

MODELS = "/v1/models"
"""GET; answered from the backends' model lists, else forwarded."""

LOCAL = ("/health", "/ready", "/metrics")
"""Served by the router itself."""


def check_path(raw_path: str) -> None:
    """Refuse (400) a request target whose path is not plain; the query is not examined."""
    path = raw_path.partition("?")[0]
    segments = path.split("/")[1:]
    if (
        not path.startswith("/")
        or "%" in path
        or "\\" in path
        or any(s in ("", ".", "..") for s in segments[:-1])
        or segments[-1] in (".", "..")
    ):
        raise RequestError(
            400,
            "the request path must be plain: no '.' or '..' segments, no percent-encoding, "
            "no empty segments; use an OpenAI path such as /v1/chat/completions",
        )
