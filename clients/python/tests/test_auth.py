"""API keys: `connect(api_key=…)` and `ApiKey.metadata()` authenticate calls; the server
refuses calls without a valid key and calls the key's role may not make."""

import grpc
import pytest

from retryd import ApiKey, connect
from retryd.v1 import chunk_queue_pb2 as pb
from retryd.v1 import chunk_queue_pb2_grpc, health_pb2, health_pb2_grpc


def one_chunk_job(job_id: str) -> pb.CreateJobRequest:
    return pb.CreateJobRequest(job_id=job_id, chunks=[pb.ChunkInput(payload=b"x")])


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value.code()


def test_calls_without_a_valid_key_are_unauthenticated(address, channels, unique):
    job_id = unique("job")
    for api_key in (None, "rtd_nope_0000"):
        with connect(address, api_key=api_key) as channel:
            queue = chunk_queue_pb2_grpc.ChunkQueueStub(channel)
            assert code_of(lambda: queue.CreateJob(one_chunk_job(job_id))) == grpc.StatusCode.UNAUTHENTICATED
    reader = chunk_queue_pb2_grpc.ChunkQueueStub(channels["reader"])
    assert code_of(lambda: reader.GetJob(pb.GetJobRequest(job_id=job_id))) == grpc.StatusCode.NOT_FOUND


def test_the_keys_role_decides_what_it_may_do(channels, unique):
    job_id = unique("job")
    reader = chunk_queue_pb2_grpc.ChunkQueueStub(channels["reader"])
    assert code_of(lambda: reader.CreateJob(one_chunk_job(job_id))) == grpc.StatusCode.PERMISSION_DENIED
    created = chunk_queue_pb2_grpc.ChunkQueueStub(channels["admin"]).CreateJob(one_chunk_job(job_id))
    assert created.job_id == job_id
    assert reader.GetJob(pb.GetJobRequest(job_id=job_id)).total_chunks == 1
    health = health_pb2_grpc.HealthStub(channels["reader"]).GetSystemHealth(health_pb2.GetSystemHealthRequest())
    assert health.database.reachable


def test_a_key_per_call_as_metadata(address, keys, unique):
    with connect(address) as channel:
        queue = chunk_queue_pb2_grpc.ChunkQueueStub(channel)
        job = queue.CreateJob(one_chunk_job(unique("job")), metadata=ApiKey(keys["admin"]).metadata())
        assert job.total_chunks == 1


@pytest.mark.parametrize("bad", ["", "two words", "naïve"])
def test_a_key_that_cannot_be_a_header_is_refused_before_any_call(address, bad):
    with pytest.raises(ValueError):
        ApiKey(bad)
    with pytest.raises(ValueError):
        connect(address, api_key=bad)
