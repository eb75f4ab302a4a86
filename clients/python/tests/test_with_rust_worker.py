"""A Rust worker (`retryd worker`, built on the Rust client's worker helper) and the Python
worker share one ChunkQueue job: together they complete every chunk, each exactly once."""

import os
import subprocess
import threading

from retryd.v1 import chunk_queue_pb2 as pb
from retryd.v1 import chunk_queue_pb2_grpc
from retryd.worker import Complete, WorkerOptions, run_chunks

CHUNKS = 60


def test_rust_and_python_workers_complete_one_job_together(address, keys, retryd_binary, channels, unique):
    queue = chunk_queue_pb2_grpc.ChunkQueueStub(channels["admin"])
    name = unique("mixed")
    job = queue.CreateJob(
        pb.CreateJobRequest(job_id=unique("job"), queue=name, chunks=[pb.ChunkInput(payload=bytes([i])) for i in range(CHUNKS)])
    )
    rust = subprocess.Popen(
        [retryd_binary, "worker", "--server", f"http://{address}", "--queue", name, "--api-key", keys["worker"],
         "--worker-id", "rust-worker", "--concurrency", "4", "--work-ms", "5"],
        stdout=subprocess.PIPE,
        text=True,
        # retryd reads RETRYD_* variables as its own settings; the tests' ones are not.
        env={name: value for name, value in os.environ.items() if not name.startswith("RETRYD_")},
    )
    rust_completed = []
    rust_did_one = threading.Event()

    def read_rust_completions():
        for line in rust.stdout:
            if line.startswith("completed "):
                rust_completed.append(int(line.split()[1]))
                rust_did_one.set()

    reader = threading.Thread(target=read_rust_completions)
    reader.start()

    python_worked = []
    python_completed = []

    def handler(chunk):
        # The first chunks wait until the Rust worker has completed one: both take part,
        # whichever of them connected first.
        assert rust_did_one.wait(30), "the Rust worker completes chunks"
        python_worked.append(chunk.chunk_id)
        return Complete(b"python")

    def on_ack(ack):
        if ack.kind == pb.WORK_ACK_KIND_COMPLETE and ack.code == 0:
            python_completed.append(ack.chunk_id)

    stop = threading.Event()
    options = WorkerOptions(worker_id="python-worker", queue=name, concurrency=4, on_ack=on_ack)
    python = threading.Thread(target=run_chunks, args=(channels["worker"], options, handler, stop))
    python.start()
    try:
        watched = list(queue.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=60))
    finally:
        stop.set()
        python.join(timeout=30)
        rust.terminate()
        rust.wait(timeout=30)
        reader.join(timeout=30)

    assert watched[-1].overall_status == pb.JOB_STATUS_COMPLETED
    assert watched[-1].progress_percentage == 100
    assert rust_completed and python_completed, "both workers completed chunks"
    assert sorted(python_worked) == sorted(python_completed), "every Python outcome was accepted"
    done = rust_completed + python_completed
    assert len(done) == len(set(done)) == CHUNKS, "every chunk completed exactly once"
    chunks = list(queue.ListChunks(pb.ListChunksRequest(job_id=job.job_id)).chunks)
    assert {chunk.chunk_id for chunk in chunks} == set(done)
    assert all(chunk.status == pb.CHUNK_STATUS_COMPLETED and chunk.attempts == 1 for chunk in chunks), "each leased once"
    by_python = {chunk.chunk_id for chunk in chunks if chunk.result == b"python"}
    assert by_python == set(python_completed), "each chunk's result is its worker's"
