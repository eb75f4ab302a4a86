import os
import threading

from retryd import connect
from retryd.v1 import chunk_queue_pb2 as pb
from retryd.v1.chunk_queue_pb2_grpc import ChunkQueueStub
from retryd.worker import Complete, WorkerOptions, run_chunks

# Optional key: a server with no keys serves loopback only and needs none.
channel = connect(os.environ.get("RETRYD_ADDRESS", "127.0.0.1:50051"), api_key=os.environ.get("RETRYD_API_KEY"))
queue = ChunkQueueStub(channel)

# Create a job of three chunks; its id makes the call idempotent.
job = queue.CreateJob(
    pb.CreateJobRequest(
        job_id=f"quickstart-{os.getpid()}-{threading.get_ident()}",
        queue="quickstart",
        chunks=[pb.ChunkInput(payload=word) for word in (b"one", b"two", b"three")],
    )
)

# Work it on a thread: a function per chunk (here it upper-cases the payload), until stopped.
stop = threading.Event()
options = WorkerOptions(worker_id="quickstart-worker", queue="quickstart")
upper_case = lambda chunk: Complete(chunk.payload.upper())  # noqa: E731
worker = threading.Thread(target=run_chunks, args=(channel, options, upper_case, stop))
worker.start()

# Watch its progress; the stream ends when the job is final.
for progress in queue.WatchJob(pb.WatchJobRequest(job_id=job.job_id)):
    print(f"{progress.job_id}: {progress.progress_percentage:g}% {pb.JobStatus.Name(progress.overall_status)}")
stop.set()
worker.join()
channel.close()
