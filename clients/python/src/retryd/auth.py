"""API keys: retryd authenticates callers by ``authorization: Bearer <key>``.

``connect(target, api_key=...)`` gives a channel whose every call (unary and streaming) carries
the key; ``ApiKey(key).metadata()`` is the same for a single call
(``stub.GetJob(request, metadata=key.metadata())``).
"""

from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple

import grpc

_PRINTABLE = re.compile(r"[\x21-\x7e]+")


class ApiKey:
    """A key as a header value. Refused at once if it cannot be sent as one."""

    def __init__(self, key: str) -> None:
        if not isinstance(key, str) or not _PRINTABLE.fullmatch(key):
            raise ValueError("an API key must be non-empty printable ASCII without spaces")
        self._value = f"Bearer {key}"

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", self._value),)

    def interceptor(self) -> "_MetadataInterceptor":
        return _MetadataInterceptor(self.metadata())


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class _MetadataInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds fixed metadata to every call, whatever its kind."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _with_metadata(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        names = {name for name, _ in self._metadata}
        kept = [(name, value) for name, value in (details.metadata or ()) if name not in names]
        return _CallDetails(  # type: ignore[return-value]
            details.method,
            details.timeout,
            [*kept, *self._metadata],
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def _intercept(self, continuation: Callable, details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._with_metadata(details), request)

    intercept_unary_unary = _intercept
    intercept_unary_stream = _intercept
    intercept_stream_unary = _intercept
    intercept_stream_stream = _intercept


def connect(
    target: str,
    api_key: str | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> grpc.Channel:
    """A channel to ``target`` ("127.0.0.1:50051"), over TLS when ``credentials`` are given,
    sending ``api_key`` on every call when one is given."""
    channel = (
        grpc.secure_channel(target, credentials) if credentials is not None else grpc.insecure_channel(target)
    )
    if api_key is None:
        return channel
    return grpc.intercept_channel(channel, ApiKey(api_key).interceptor())
