//! A no-op worker on a batched Work stream, shared by the processing and latency measurements:
//! it completes every chunk it is handed at once and gives its credit back with each
//! acknowledgement batch.

use retryd_client::tonic::transport::Channel;
use retryd_client::v1::work_request::Kind as Outgoing;
use retryd_client::v1::work_response::Kind as Incoming;
use retryd_client::v1::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{authorized, BenchArgs, Client};

/// Works `queue` until the stream ends, telling `on_chunks` what arrived and `on_acks` what
/// the server acknowledged.
pub async fn work_batched(
    channel: Channel,
    args: &BenchArgs,
    queue: String,
    worker_id: String,
    credits: u32,
    on_chunks: impl Fn(&[LeasedChunk]),
    on_acks: impl Fn(&[WorkAck]),
) -> Result<(), String> {
    let mut client = Client::new(channel);
    let (requests, outbox) = mpsc::channel::<WorkRequest>(64);
    let send = |kind| WorkRequest { kind: Some(kind) };
    let start = WorkStart {
        queue,
        worker_id,
        lease_seconds: 0,
        batch: true,
    };
    requests
        .send(send(Outgoing::Start(start)))
        .await
        .map_err(|e| e.to_string())?;
    requests
        .send(send(Outgoing::Credit(WorkCredit { count: credits })))
        .await
        .map_err(|e| e.to_string())?;
    let mut responses = client
        .work(authorized(ReceiverStream::new(outbox), args))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    while let Some(response) = responses.message().await.map_err(|e| e.to_string())? {
        let outgoing = match response.kind {
            Some(Incoming::Chunks(batch)) => {
                on_chunks(&batch.chunks);
                let completions = batch.chunks.into_iter().map(completion_of).collect();
                Outgoing::CompleteBatch(CompleteChunksRequest { completions })
            }
            Some(Incoming::Acks(batch)) => {
                on_acks(&batch.acks);
                Outgoing::Credit(WorkCredit {
                    count: batch.acks.len() as u32,
                })
            }
            _ => continue,
        };
        requests
            .send(send(outgoing))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A no-op worker's completion of a chunk.
pub fn completion_of(chunk: LeasedChunk) -> CompleteChunkRequest {
    CompleteChunkRequest {
        chunk_id: chunk.chunk_id,
        lease_token: chunk.lease_token,
        result: Vec::new(),
    }
}
