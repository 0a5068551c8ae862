"""Pure OpenAI-protocol helpers for the simulator: parse a request, shape responses and chunks."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from llmsvc.router.errors import RequestError

Kind = Literal["chat", "text"]


@dataclass(frozen=True)
class Completion:
    """A validated completion request."""

    kind: Kind
    model: str
    prompt: str
    max_tokens: int | None
    stream: bool
    include_usage: bool


def _prompt_of(kind: Kind, body: dict[str, Any]) -> str:
    if kind == "text":
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            return "\n".join(prompt)
        if not isinstance(prompt, str):
            raise RequestError(400, "'prompt' must be a string or a list of strings", "prompt")
        return prompt
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty list of messages", "messages")
    return "\n".join(_message_text(m) for m in messages)


def _message_text(message: Any) -> str:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise RequestError(400, "each message needs a string 'role' and a 'content'", "messages")
    content = message.get("content")
    if isinstance(content, list):
        content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise RequestError(400, "message 'content' must be a string or a list of parts", "messages")
    return f"{message['role']}: {content}"


def _max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(400, "'max_tokens' must be a positive integer", "max_tokens")
    return value


def parse_completion(kind: Kind, body: Any, served_model: str) -> Completion:
    """Validate ``body`` as an OpenAI (chat) completion request; raises ``RequestError``."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    model = body.get("model", served_model)
    if not isinstance(model, str):
        raise RequestError(400, "'model' must be a string", "model")
    if model != served_model:
        raise RequestError(404, f"The model `{model}` does not exist.", "model")
    if body.get("n", 1) != 1:
        raise RequestError(400, "only n=1 is supported", "n")
    options = body.get("stream_options") or {}
    return Completion(
        kind=kind,
        model=model,
        prompt=_prompt_of(kind, body),
        max_tokens=_max_tokens(body),
        stream=bool(body.get("stream", False)),
        include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
    )


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The OpenAI ``usage`` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _envelope(req: Completion, request_id: str, chunk: bool) -> dict[str, Any]:
    if req.kind == "chat":
        obj = "chat.completion.chunk" if chunk else "chat.completion"
    else:
        obj = "text_completion"
    return {"id": request_id, "object": obj, "created": int(time.time()), "model": req.model}


def full_response(
    req: Completion, request_id: str, text: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """A non-streaming response body."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": "length", "logprobs": None}
    if req.kind == "chat":
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    body = _envelope(req, request_id, chunk=False)
    body["choices"] = [choice]
    body["usage"] = usage(prompt_tokens, completion_tokens)
    return body


def chunk(
    req: Completion, request_id: str, text: str, finish: str | None = None, first: bool = False
) -> bytes:
    """One SSE event carrying ``text`` (and the role on the first chat chunk)."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
    if req.kind == "chat":
        delta: dict[str, str] = {"role": "assistant"} if first else {}
        if text or not finish:
            delta["content"] = text
        choice["delta"] = delta
    else:
        choice["text"] = text
    body = _envelope(req, request_id, chunk=True)
    body["choices"] = [choice]
    return sse(body)


def usage_chunk(req: Completion, request_id: str, prompt_tokens: int, completion: int) -> bytes:
    """The final usage-only SSE event (``stream_options.include_usage``)."""
    body = _envelope(req, request_id, chunk=True)
    body["choices"] = []
    body["usage"] = usage(prompt_tokens, completion)
    return sse(body)


def sse(body: dict[str, Any]) -> bytes:
    """Encode one Server-Sent Event."""
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"
