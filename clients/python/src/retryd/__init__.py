"""Python client for retryd.

- ``retryd.v1``: messages (``chunk_queue_pb2`` …) and gRPC stubs (``chunk_queue_pb2_grpc`` …),
  generated from the contracts in ``proto/`` when the package is built.
- ``retryd.auth``: API keys (``connect``, ``ApiKey``).
- ``retryd.worker``: ``run_chunks``, a function per chunk over a ``Work`` stream.
"""

from retryd.auth import ApiKey, connect

__all__ = ["ApiKey", "connect"]
