"""Delegated authentication and authorization, as the aggregation layer requires.

The kube-apiserver proxies ``/apis/external.metrics.k8s.io/...`` to us with a client certificate
signed by its request-header CA and the caller's identity in ``X-Remote-User``/``X-Remote-Group``;
those are trusted only on such a certificate whose name is allowed. A caller with a bearer token
is checked with a TokenReview. Every request is then authorized with a SubjectAccessReview, so
the cluster's RBAC decides who may read which metric. Decisions are cached briefly.

The parsing and header logic is pure; :class:`Delegate` makes the two API calls.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Obj = dict[str, Any]
Post = Callable[[str, Obj], Awaitable[Obj]]
CONFIGMAP = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105 (a path)
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
AUTHENTICATED = "system:authenticated"


@dataclass(frozen=True)
class RequestHeaderConfig:
    """The request-header part of ``extension-apiserver-authentication`` (kube-system)."""

    client_ca: str
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)


@dataclass(frozen=True)
class User:
    """An authenticated caller."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""


def _json_list(data: Mapping[str, str], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = data.get(key)
    if not raw:
        return default
    values = json.loads(raw)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{key} in extension-apiserver-authentication is not a list of strings")
    return tuple(values) or default


def parse_config(data: Mapping[str, str]) -> RequestHeaderConfig:
    """Read the ConfigMap's data; ValueError when the API server has no request-header CA."""
    ca = data.get("requestheader-client-ca-file", "")
    if "BEGIN CERTIFICATE" not in ca:
        raise ValueError(
            "kube-system/extension-apiserver-authentication has no requestheader-client-ca-file: "
            "start kube-apiserver with --requestheader-client-ca-file (the aggregation layer)"
        )
    return RequestHeaderConfig(
        client_ca=ca,
        allowed_names=_json_list(data, "requestheader-allowed-names", ()),
        username_headers=_json_list(data, "requestheader-username-headers", ("X-Remote-User",)),
        group_headers=_json_list(data, "requestheader-group-headers", ("X-Remote-Group",)),
    )


def common_name(peercert: Mapping[str, Any] | None) -> str | None:
    """The CN of a verified peer certificate (``ssl.SSLSocket.getpeercert()`` shape)."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class Headers(Protocol):
    """A multi-valued header mapping (aiohttp's ``CIMultiDictProxy`` is one)."""

    def get(self, key: str) -> str | None:
        """The first value of ``key``."""
        ...

    def getall(self, key: str, default: list[str]) -> list[str]:
        """Every value of ``key``."""
        ...


def from_request_headers(
    cn: str | None, headers: Headers, config: RequestHeaderConfig
) -> User | None:
    """The proxied user, if the client certificate is the aggregator's; else None."""
    if cn is None or (config.allowed_names and cn not in config.allowed_names):
        return None
    name = next((headers.get(h) for h in config.username_headers if headers.get(h)), None)
    if not name:
        return None
    groups = [g for h in config.group_headers for g in headers.getall(h, [])]
    if AUTHENTICATED not in groups:  # as the kube-apiserver adds it to every authenticated user
        groups.append(AUTHENTICATED)
    return User(name, tuple(groups))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header."""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    return authorization[len("Bearer ") :].strip() or None


def access_review(user: User, attributes: Obj) -> Obj:
    """A SubjectAccessReview body for ``user`` and resource or non-resource ``attributes``."""
    key = "nonResourceAttributes" if "path" in attributes else "resourceAttributes"
    spec: Obj = {"user": user.name, "groups": list(user.groups), key: attributes}
    if user.uid:
        spec["uid"] = user.uid
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


@dataclass
class Delegate:
    """TokenReview and SubjectAccessReview through ``post``, with a short cache of answers."""

    post: Post
    ttl: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, tuple[float, Any]] = field(default_factory=dict)

    def _cached(self, key: str) -> tuple[bool, Any]:
        hit = self._cache.get(key)
        if hit is None or self.clock() - hit[0] > self.ttl:
            return False, None
        return True, hit[1]

    async def authenticate(self, token: str) -> User | None:
        """The user behind ``token``, or None when the API server does not know it."""
        key = f"token:{hash(token)}"
        found, user = self._cached(key)
        if not found:
            review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview"}
            answer = await self.post(TOKEN_REVIEWS, {**review, "spec": {"token": token}})
            user = _reviewed_user(answer.get("status") or {})
            self._cache[key] = (self.clock(), user)
        return user if isinstance(user, User) else None

    async def authorize(self, user: User, attributes: Obj) -> bool:
        """Whether RBAC (or the cluster's authorizer) lets ``user`` do ``attributes``."""
        key = json.dumps([user.name, sorted(user.groups), attributes], sort_keys=True)
        found, allowed = self._cached(key)
        if not found:
            answer = await self.post(ACCESS_REVIEWS, access_review(user, attributes))
            allowed = bool((answer.get("status") or {}).get("allowed"))
            self._cache[key] = (self.clock(), allowed)
        return bool(allowed)


def _reviewed_user(status: Obj) -> User | None:
    if not status.get("authenticated"):
        return None
    info = status.get("user") or {}
    groups: Sequence[str] = info.get("groups") or ()
    return User(str(info.get("username", "")), tuple(groups), str(info.get("uid", "")))
