"""Pure parsing of client requests into what policies need (prompts are private: never logged).

The body's parse cost is bounded first (``jsonscan``), and policies see at most the first
``PROMPT_CHARS`` characters of a prompt (prefix-aware routing hashes no more than 64 Ki).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llmsvc.router.errors import RequestError
from llmsvc.router.jsonscan import JsonLimits, check
from llmsvc.router.policies import RequestInfo

PROMPT_CHARS = 65_536
DEFAULT_LIMITS = JsonLimits()


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _chat_prompt(body: Mapping[str, Any]) -> str:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty list of messages", "messages")
    if not all(isinstance(message, dict) for message in messages):
        raise RequestError(400, "each message must be a JSON object", "messages")
    parts, size = [], 0
    for message in messages:
        if size >= PROMPT_CHARS:
            break
        part = f"{message.get('role', '')}: {_content_text(message.get('content'))}\n"
        parts.append(part[:PROMPT_CHARS])
        size += len(parts[-1])
    return "".join(parts)[:PROMPT_CHARS]


def _text_prompt(body: Mapping[str, Any]) -> str:
    """The prompt as text: strings as they are, token ids joined (the backend validates them)."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt[:PROMPT_CHARS]
    if isinstance(prompt, list) and prompt:
        head = prompt[:PROMPT_CHARS]
        return "\n".join(p if isinstance(p, str) else json.dumps(p) for p in head)[:PROMPT_CHARS]
    raise RequestError(
        400, "'prompt' must be a string, a list of strings or of token ids", "prompt"
    )


def parse_body(body: bytes, limits: JsonLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The request body as a JSON object, or a 400/413 that says what is wrong."""
    if not body:
        raise RequestError(400, "the request body is empty; send a JSON object")
    check(body, limits)
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise RequestError(400, "the request body nests JSON too deeply; flatten it") from None
    if not isinstance(parsed, dict):
        raise RequestError(400, "the request body must be a JSON object")
    return parsed


def request_info(
    path: str, body: bytes, session: str | None, limits: JsonLimits = DEFAULT_LIMITS
) -> RequestInfo:
    """Validate a completion request and extract its prompt text, model and session key."""
    parsed = parse_body(body, limits)
    model = parsed.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError(400, "'model' must be a string", "model")
    if path.endswith("/chat/completions"):
        prompt = _chat_prompt(parsed)
    elif path.endswith("/completions"):
        prompt = _text_prompt(parsed)
    else:
        prompt = ""
    return RequestInfo(prompt=prompt, session=session or None, model=model)


def priority_of(value: str | None) -> int:
    """The ``x-priority`` header as an integer (higher is served first); 400 if malformed."""
    if value is None or value == "":
        return 0
    try:
        return int(value)
    except ValueError:
        raise RequestError(400, "the priority header must be an integer") from None
