"""Bound what parsing a JSON body can cost before ``json.loads`` builds a single object.

``json.loads`` of a 16 MiB body of tiny values (``[{},{},...]``) builds millions of Python
objects (60-270 bytes each, so ~800 MiB) and stalls the event loop; nesting ~900 deep overflows
the recursion limit. ``check`` measures the body on its raw bytes with C-speed byte operations
only (``count``, ``replace``, ``split``, ``translate``), never a Python loop over the body:

- **values**: commas plus opening brackets outside strings, plus the strings themselves, i.e.
  roughly the number of Python objects ``json.loads`` would build. Each costs at most ~270 bytes,
  so the default limit of 262,144 bounds a parse to ~70 MiB whatever the body looks like.
- **depth**: the deepest bracket nesting outside strings.

The cheap case (few brackets and separators in the raw bytes) needs no more than four ``count``
calls. Otherwise strings are cut out by splitting on unescaped quotes; their number is checked
first, so that split never makes more than ``2 x max_values`` pieces.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate

from llmsvc.router.errors import RequestError

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"{}[]")
_DELTA = {ord("{"): 1, ord("["): 1, ord("}"): -1, ord("]"): -1}


@dataclass(frozen=True)
class JsonLimits:
    """The most JSON values and the deepest nesting a request body may have."""

    max_values: int = 262_144
    max_depth: int = 64


def _outside_strings(body: bytes, max_strings: int) -> tuple[bytes, int]:
    """The body with every string removed, and how many strings there were."""
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in body else body
    strings = unescaped.count(b'"') // 2
    if strings > max_strings:
        return b"", strings
    if not strings:
        return unescaped, 0
    return b"".join(unescaped.split(b'"')[0::2]), strings


def _structure(data: bytes) -> tuple[int, int]:
    """(separators + opening brackets, opening brackets) of ``data``."""
    opening = data.count(b"{") + data.count(b"[")
    return data.count(b",") + opening, opening


def _depth(outside: bytes) -> int:
    brackets = outside.translate(None, _NOT_BRACKETS)
    return max(accumulate(_DELTA[b] for b in brackets), default=0)


def measure(body: bytes, max_values: int = 1 << 62) -> tuple[int, int]:
    """(values, depth) of a JSON body; values count strings, separators and opening brackets.

    Beyond ``max_values`` the depth is not computed (it costs a Python step per bracket) and is
    reported as 0; beyond ``max_values`` strings the body is not even split.
    """
    outside, strings = _outside_strings(body, max_values)
    if strings > max_values:
        return strings, 0
    values = _structure(outside)[0] + strings
    return values, _depth(outside) if values <= max_values else 0


def check(body: bytes, limits: JsonLimits) -> None:
    """Raise a ``RequestError`` (413 or 400) when ``body`` would be too costly to parse."""
    values, opening = _structure(body)
    if values + body.count(b'"') // 2 <= limits.max_values and opening <= limits.max_depth:
        return  # cannot exceed either limit, even counting characters inside strings
    values, depth = measure(body, limits.max_values)
    if values > limits.max_values:
        raise RequestError(
            413,
            f"the request body has too many JSON values ({values}; the router accepts "
            f"{limits.max_values}, flag --max-json-values): send fewer messages or tokens",
        )
    if depth > limits.max_depth:
        raise RequestError(
            400,
            f"the request body nests JSON deeper than {limits.max_depth} levels "
            "(flag --max-json-depth); flatten it",
        )
