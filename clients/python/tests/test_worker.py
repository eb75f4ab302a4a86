"""The worker helper against the real server: a function per chunk over the Work stream, with
retries, final failures, heartbeats and a clean stop."""

import threading

import grpc
import pytest

from retryd.v1 import chunk_queue_pb2 as pb
from retryd.v1 import chunk_queue_pb2_grpc
from retryd.worker import Complete, Fail, Retry, WorkerOptions, run_chunks

FAST_RETRIES = pb.RetryPolicy(initial_backoff_ms=10, multiplier=2, max_backoff_ms=50)


class Worker:
    """run_chunks on a thread of its own, stopped and joined by `stop()`."""

    def __init__(self, channel, options, handler):
        self.stop_requested = threading.Event()
        self.error = None
        self._thread = threading.Thread(target=self._run, args=(channel, options, handler))
        self._thread.start()

    def _run(self, channel, options, handler):
        try:
            run_chunks(channel, options, handler, self.stop_requested)
        except Exception as error:  # noqa: BLE001 - handed to the test by stop()
            self.error = error

    def stop(self):
        self.stop_requested.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the worker stopped"
        if self.error is not None:
            raise self.error


def watch_to_the_end(queue, job_id):
    return list(queue.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=60))


def test_a_job_is_created_worked_and_watched_to_100_percent(channels, unique):
    queue = chunk_queue_pb2_grpc.ChunkQueueStub(channels["admin"])
    name = unique("py-worker")
    job = queue.CreateJob(
        pb.CreateJobRequest(
            job_id=unique("job"),
            queue=name,
            chunks=[pb.ChunkInput(payload=bytes([i])) for i in range(20)],
            retry_policy=FAST_RETRIES,
        )
    )

    def handler(chunk):
        n = chunk.payload[0]
        if n == 7:
            return Fail("bad input")
        if n == 3 and chunk.attempt == 1:
            return Retry("flaky")
        if n == 5 and chunk.attempt == 1:
            raise RuntimeError("raised on the first attempt")
        return Complete(bytes([n * 2]))

    worker = Worker(channels["worker"], WorkerOptions(worker_id="py-worker-1", queue=name, concurrency=4), handler)
    watched = watch_to_the_end(queue, job.job_id)
    worker.stop()

    last = watched[-1]
    assert last.overall_status == pb.JOB_STATUS_PARTIAL_FAILURE
    assert (last.completed, last.failed, last.progress_percentage) == (19, 1, 100)
    percentages = [progress.progress_percentage for progress in watched]
    assert percentages == sorted(percentages), "progress never goes back"
    chunks = queue.ListChunks(pb.ListChunksRequest(job_id=job.job_id)).chunks
    assert (chunks[3].attempts, chunks[3].status) == (2, pb.CHUNK_STATUS_COMPLETED)
    assert (chunks[5].attempts, chunks[5].last_error) == (2, "raised on the first attempt")
    assert (chunks[7].status, chunks[7].last_error) == (pb.CHUNK_STATUS_FAILED, "bad input")
    assert chunks[9].result == bytes([18]), "the function's result is kept"


def test_heartbeats_extend_the_lease_of_a_chunk_in_hand(channels, unique):
    queue = chunk_queue_pb2_grpc.ChunkQueueStub(channels["admin"])
    name = unique("py-heartbeat")
    queue.CreateJob(pb.CreateJobRequest(job_id=unique("job"), queue=name, chunks=[pb.ChunkInput(payload=b"1")]))
    acks = []
    heartbeat_accepted = threading.Event()
    leased = []

    def on_ack(ack):
        acks.append(ack)
        if ack.kind == pb.WORK_ACK_KIND_HEARTBEAT and ack.code == 0:
            heartbeat_accepted.set()

    def handler(chunk):
        leased.append(chunk.lease_expires_at.ToMicroseconds())
        # Finish only once the server has accepted a heartbeat for this chunk.
        assert heartbeat_accepted.wait(20)
        return Complete()

    options = WorkerOptions(worker_id="py-heartbeat", queue=name, lease_seconds=30, heartbeat_every=0.02, on_ack=on_ack)
    worker = Worker(channels["worker"], options, handler)
    assert heartbeat_accepted.wait(20), "a heartbeat was acknowledged"
    worker.stop()

    heartbeat = next(ack for ack in acks if ack.kind == pb.WORK_ACK_KIND_HEARTBEAT and ack.code == 0)
    assert heartbeat.lease_expires_at.ToMicroseconds() > leased[0], "the lease runs longer than first granted"
    completion = next(ack for ack in acks if ack.kind == pb.WORK_ACK_KIND_COMPLETE)
    assert completion.code == 0


def test_stopping_finishes_the_chunks_in_hand_takes_no_more_and_leaves_the_rest(channels, unique):
    queue = chunk_queue_pb2_grpc.ChunkQueueStub(channels["admin"])
    name = unique("py-stop")
    job = queue.CreateJob(
        pb.CreateJobRequest(job_id=unique("job"), queue=name, chunks=[pb.ChunkInput(payload=bytes([i])) for i in range(5)])
    )
    both_in_hand = threading.Barrier(3)  # the two handlers and this test
    release = threading.Event()
    started = []

    def handler(chunk):
        started.append(chunk.chunk_id)
        both_in_hand.wait(20)
        assert release.wait(20)
        return Complete()

    worker = Worker(channels["worker"], WorkerOptions(worker_id="py-stopper", queue=name, concurrency=2), handler)
    # Both chunks the worker has room for are in hand: stop, then let them finish.
    both_in_hand.wait(20)
    worker.stop_requested.set()
    release.set()
    worker.stop()
    assert len(started) == 2, "no chunk is taken after the stop"

    chunks = queue.ListChunks(pb.ListChunksRequest(job_id=job.job_id)).chunks
    statuses = [chunk.status for chunk in chunks]
    assert (statuses.count(pb.CHUNK_STATUS_COMPLETED), statuses.count(pb.CHUNK_STATUS_PENDING)) == (2, 3)
    # The rest is claimable at once by another worker.
    other = chunk_queue_pb2_grpc.ChunkQueueStub(channels["worker"])
    claimed = other.ClaimChunks(pb.ClaimChunksRequest(queue=name, worker_id="other", max_chunks=5))
    assert len(claimed.chunks) == 3


def test_a_worker_whose_key_may_not_work_gets_the_servers_refusal(channels, unique):
    with pytest.raises(grpc.RpcError) as refused:
        run_chunks(channels["reader"], WorkerOptions(worker_id="reader", queue=unique("py-refused")), Complete, threading.Event())
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
