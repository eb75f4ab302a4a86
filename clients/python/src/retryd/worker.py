"""Run a function per chunk of a queue over a ``Work`` stream, like the Rust client's
``worker::run_chunks``: the server pushes chunks while the worker has room (``concurrency``
credits), each chunk's function runs on a thread of its own, chunks in hand keep their lease
with heartbeats, and every outcome is reported on the stream.

Setting ``stop`` stops cleanly: no more chunks are taken, the chunks in hand finish and are
reported, then the stream is closed and ``run_chunks`` returns::

    stop = threading.Event()
    run_chunks(channel, WorkerOptions(queue="emails", worker_id="mailer-1"), send_email, stop)
"""

from __future__ import annotations

import queue as queues
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator, Union

import grpc

from retryd.auth import ApiKey
from retryd.v1 import chunk_queue_pb2 as pb
from retryd.v1 import chunk_queue_pb2_grpc


@dataclass(frozen=True)
class Complete:
    """Done, with an optional result kept with the chunk."""

    result: bytes = b""


@dataclass(frozen=True)
class Retry:
    """Failed; tried again after the job's backoff, until its attempts are used up."""

    error: str


@dataclass(frozen=True)
class Fail:
    """Failed for good."""

    error: str


Outcome = Union[Complete, Retry, Fail]

# Works one chunk. An exception counts as Retry(str(exception)): most are transient, and the
# job's max_attempts bound the retries.
Handler = Callable[[pb.LeasedChunk], Outcome]


@dataclass
class WorkerOptions:
    worker_id: str
    queue: str = "default"
    # Chunks worked on at once (one thread each).
    concurrency: int = 8
    # Lease per chunk in seconds (0: the server's default).
    lease_seconds: int = 60
    # While chunks are in hand, their leases are extended this often (seconds).
    heartbeat_every: float = 20.0
    # Sent as `authorization: Bearer <key>` (not needed on a channel from `connect(api_key=…)`).
    api_key: str | None = None
    # Told how the server settled each outcome and heartbeat (code 0: accepted).
    on_ack: Callable[[pb.WorkAck], None] | None = None


_CLOSE = object()


class _Requests:
    """What the worker sends on the stream, in order, until closed."""

    def __init__(self) -> None:
        self._queue: queues.SimpleQueue = queues.SimpleQueue()
        self._closed = threading.Event()

    def send(self, **kind: object) -> None:
        if not self._closed.is_set():
            self._queue.put(pb.WorkRequest(**kind))

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._queue.put(_CLOSE)

    def __iter__(self) -> Iterator[pb.WorkRequest]:
        while (request := self._queue.get()) is not _CLOSE:
            yield request


def run_chunks(channel: grpc.Channel, options: WorkerOptions, handler: Handler, stop: threading.Event) -> None:
    """Works chunks until ``stop`` is set (returns once the chunks in hand are reported and the
    stream is closed) or the stream fails (raises the ``grpc.RpcError``; reconnecting is the
    caller's choice)."""
    if options.concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    requests = _Requests()
    start = pb.WorkStart(queue=options.queue, worker_id=options.worker_id, lease_seconds=options.lease_seconds)
    requests.send(start=start)
    requests.send(credit=pb.WorkCredit(count=options.concurrency))
    in_hand: dict[int, tuple[pb.LeasedChunk, Future]] = {}
    lock = threading.Lock()
    stopping = threading.Event()
    finished = threading.Event()

    def work_one(chunk: pb.LeasedChunk) -> None:
        try:
            outcome = handler(chunk)
        except Exception as error:  # noqa: BLE001 - any failure of the handler is the chunk's
            outcome = Retry(str(error) or type(error).__name__)
        # Reported and let go under the lock, so no heartbeat for it follows its outcome.
        with lock:
            requests.send(**_report(chunk, outcome))
            del in_hand[chunk.chunk_id]

    def heartbeats() -> None:
        while not finished.wait(max(options.heartbeat_every, 0.01)):
            with lock:
                for chunk, _ in in_hand.values():
                    extend = pb.ExtendLeaseRequest(
                        chunk_id=chunk.chunk_id, lease_token=chunk.lease_token, lease_seconds=options.lease_seconds
                    )
                    requests.send(heartbeat=extend)

    def close_when_stopped() -> None:
        # Closing our side once the chunks in hand are reported ends the stream: the server
        # settles the outcomes sent, finishes, and releases any chunk it pushed that we did not take.
        while not stop.wait(0.05):
            if finished.is_set():
                return
        with lock:
            stopping.set()
        while True:
            with lock:
                pending = [future for _, future in in_hand.values()]
            if not pending:
                break
            for future in pending:
                future.exception()
        requests.close()

    metadata = ApiKey(options.api_key).metadata() if options.api_key is not None else None
    stub = chunk_queue_pb2_grpc.ChunkQueueStub(channel)
    threading.Thread(target=heartbeats, name="retryd-heartbeats", daemon=True).start()
    threading.Thread(target=close_when_stopped, name="retryd-stop", daemon=True).start()
    pool = ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="retryd-chunk")
    try:
        for response in stub.Work(iter(requests), metadata=metadata):
            kind = response.WhichOneof("kind")
            if kind == "chunk":
                chunk = response.chunk
                with lock:
                    if not stopping.is_set():
                        in_hand[chunk.chunk_id] = (chunk, pool.submit(work_one, chunk))
            elif kind == "ack":
                if options.on_ack is not None:
                    options.on_ack(response.ack)
                # A settled (or refused) outcome makes room for another chunk; a heartbeat frees none.
                if response.ack.kind != pb.WORK_ACK_KIND_HEARTBEAT and not stopping.is_set():
                    requests.send(credit=pb.WorkCredit(count=1))
    finally:
        finished.set()
        requests.close()
        # After a clean stop nothing is left in hand; after a failure, handlers still running
        # finish on their own but can no longer report.
        pool.shutdown(wait=False, cancel_futures=True)
    if not stopping.is_set():
        raise ConnectionError("the server ended the Work stream")


def _report(chunk: pb.LeasedChunk, outcome: object) -> dict[str, object]:
    """The Work request that reports a chunk's outcome."""
    lease = {"chunk_id": chunk.chunk_id, "lease_token": chunk.lease_token}
    if isinstance(outcome, Complete):
        return {"complete": pb.CompleteChunkRequest(**lease, result=outcome.result)}
    if isinstance(outcome, (Retry, Fail)):
        error, retryable = outcome.error, isinstance(outcome, Retry)
    else:
        error, retryable = f"the handler returned {outcome!r}, not Complete, Retry or Fail", True
    return {"fail": pb.FailChunkRequest(**lease, error_message=error, retryable=retryable)}
