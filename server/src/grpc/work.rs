//! The `Work` stream: the server pushes leased chunks to a connected worker as far as its credits
//! allow, and takes its outcomes on the same stream. Completions that arrive together are settled
//! in one transaction. When the stream ends, for whatever reason, the chunks it still holds are
//! released at once instead of waiting for their leases to expire.

use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use retryd_client::v1 as pb;
use retryd_client::v1::work_request::Kind;
use tokio::sync::{mpsc, watch};
use tonic::{Code, Status, Streaming};

use super::{convert, error::status};
use crate::core::chunks::Completion;
use crate::core::Error;
use crate::service::chunk_queue::{new_lease_token, ChunkQueueService, ClaimSpec};

type Outbound = mpsc::Sender<Result<pb::WorkResponse, Status>>;

/// Why the stream loop stopped.
enum End {
    /// The client closed its side or went away.
    ClientGone,
    /// The stream cannot go on; the client is told why.
    Fail(Status),
}

pub async fn serve(
    service: Arc<ChunkQueueService>,
    mut inbound: Streaming<pb::WorkRequest>,
    outbound: Outbound,
    shutdown: watch::Receiver<bool>,
) {
    let (spec, batch) = match first_message(&service, &mut inbound).await {
        Ok(opening) => opening,
        Err(End::Fail(status)) => {
            let _ = outbound.send(Err(status)).await;
            return;
        }
        Err(End::ClientGone) => return,
    };
    // Every lease this stream takes carries this prefix, so they can be released together.
    let stream_prefix = format!("{}-", &new_lease_token()[..16]);
    let mut worker = Worker {
        service: Arc::clone(&service),
        spec,
        batch,
        stream_prefix,
        claims: 0,
        credits: 0,
        acks: Vec::new(),
        outbound,
    };
    let end = worker.run(&mut inbound, shutdown).await;
    if let Err(err) = service.release_leases(&worker.stream_prefix).await {
        tracing::warn!(error = %err, "could not release a closed Work stream's leases; they expire instead");
    }
    if let End::Fail(status) = end {
        let _ = worker.outbound.send(Err(status)).await;
    }
}

/// The stream's claim settings, and whether it wants batched messages.
async fn first_message(
    service: &ChunkQueueService,
    inbound: &mut Streaming<pb::WorkRequest>,
) -> Result<(ClaimSpec, bool), End> {
    match inbound.next().await {
        Some(Ok(pb::WorkRequest {
            kind: Some(Kind::Start(start)),
        })) => service
            .claim_spec(start.queue, start.worker_id, start.lease_seconds)
            .map(|spec| (spec, start.batch))
            .map_err(|err| End::Fail(status(err))),
        Some(Ok(_)) => Err(End::Fail(Status::invalid_argument(
            "invalid kind: the first message of a Work stream must be `start`",
        ))),
        Some(Err(_)) | None => Err(End::ClientGone),
    }
}

struct Worker {
    service: Arc<ChunkQueueService>,
    spec: ClaimSpec,
    /// Chunks and acknowledgements go out in batches.
    batch: bool,
    stream_prefix: String,
    claims: u64,
    credits: u32,
    /// Acknowledgements not sent yet: flushed after each round of messages.
    acks: Vec<pb::WorkAck>,
    outbound: Outbound,
}

impl Worker {
    async fn run(
        &mut self,
        inbound: &mut Streaming<pb::WorkRequest>,
        mut shutdown: watch::Receiver<bool>,
    ) -> End {
        loop {
            // A wake-up that comes while we claim is kept for us (see events.rs).
            let signal = self.service.events().queue_signal(&self.spec.queue);
            if self.credits > 0 {
                if let Err(end) = self.push_ready_chunks().await {
                    return end;
                }
            }
            let pause = if self.credits > 0 {
                match self.service.pause_until_ready(&self.spec.queue).await {
                    Ok(pause) => Some(pause),
                    Err(err) => return End::Fail(status(err)),
                }
            } else {
                None
            };
            tokio::select! {
                message = inbound.next() => {
                    let Some(Ok(first)) = message else { return End::ClientGone };
                    if let Err(end) = self.handle_messages(first, inbound).await {
                        return end;
                    }
                }
                _ = signal.notified(), if self.credits > 0 => {}
                _ = tokio::time::sleep(pause.unwrap_or_default()), if pause.is_some() => {}
                _ = super::until_shutdown(&mut shutdown) => {
                    return End::Fail(Status::unavailable("server is shutting down"));
                }
                _ = self.outbound.closed() => return End::ClientGone,
            }
        }
    }

    /// Leases as many ready chunks as the credits allow and sends them.
    async fn push_ready_chunks(&mut self) -> Result<(), End> {
        let batch = self.credits.min(self.service.limits().max_claim_batch);
        self.claims += 1;
        let token = format!("{}{}", self.stream_prefix, self.claims);
        let chunks = self
            .service
            .claim_now(&self.spec, batch, &token)
            .await
            .map_err(|err| End::Fail(status(err)))?;
        self.credits -= chunks.len() as u32;
        if self.batch {
            if !chunks.is_empty() {
                let chunks = chunks.into_iter().map(convert::leased_chunk).collect();
                self.send(pb::work_response::Kind::Chunks(pb::LeasedChunks { chunks }))
                    .await?;
            }
            return Ok(());
        }
        for chunk in chunks {
            self.send(pb::work_response::Kind::Chunk(convert::leased_chunk(chunk)))
                .await?;
        }
        Ok(())
    }

    /// Handles `first` and every message already waiting behind it, settling their completions
    /// together.
    async fn handle_messages(
        &mut self,
        first: pb::WorkRequest,
        inbound: &mut Streaming<pb::WorkRequest>,
    ) -> Result<(), End> {
        let mut completions: Vec<Completion> = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message.kind {
                Some(Kind::Credit(credit)) => {
                    // Credits beyond one claim batch add nothing but memory held by the stream.
                    let cap = self.service.limits().max_claim_batch;
                    self.credits = self.credits.saturating_add(credit.count).min(cap);
                }
                Some(Kind::Complete(complete)) => self.take_completion(complete, &mut completions),
                Some(Kind::CompleteBatch(batch)) => {
                    for complete in batch.completions {
                        self.take_completion(complete, &mut completions);
                    }
                }
                Some(Kind::Fail(fail)) => {
                    let outcome = self
                        .service
                        .fail(
                            fail.chunk_id,
                            fail.lease_token,
                            fail.error_message,
                            fail.retryable,
                        )
                        .await
                        .map(|_| ());
                    self.ack(fail.chunk_id, pb::WorkAckKind::Fail, outcome, None);
                }
                Some(Kind::Heartbeat(extend)) => {
                    let outcome = self
                        .service
                        .extend_lease(extend.chunk_id, extend.lease_token, extend.lease_seconds)
                        .await;
                    let expires_at = outcome.as_ref().ok().copied();
                    self.ack(
                        extend.chunk_id,
                        pb::WorkAckKind::Heartbeat,
                        outcome.map(|_| ()),
                        expires_at,
                    );
                }
                Some(Kind::Start(_)) => {
                    return Err(End::Fail(Status::invalid_argument(
                        "invalid kind: `start` may only be the first message",
                    )))
                }
                None => {
                    return Err(End::Fail(Status::invalid_argument(
                        "invalid kind: the message is empty",
                    )));
                }
            }
            // Take what is already waiting, without waiting for more.
            if completions.len()
                < usize::try_from(self.service.limits().max_claim_batch).unwrap_or(1000)
            {
                if let Some(Some(Ok(message))) = inbound.next().now_or_never() {
                    next = Some(message);
                }
            }
        }
        self.settle(completions).await?;
        self.flush_acks().await
    }

    /// Validates a completion into the batch being gathered, or acknowledges why not.
    fn take_completion(
        &mut self,
        complete: pb::CompleteChunkRequest,
        completions: &mut Vec<Completion>,
    ) {
        let chunk_id = complete.chunk_id;
        match self
            .service
            .completion(chunk_id, complete.lease_token, complete.result)
        {
            Ok(completion) => completions.push(completion),
            Err(err) => self.ack(chunk_id, pb::WorkAckKind::Complete, Err(err), None),
        }
    }

    async fn settle(&mut self, completions: Vec<Completion>) -> Result<(), End> {
        let chunk_ids: Vec<i64> = completions.iter().map(|c| c.chunk_id).collect();
        let results = self
            .service
            .complete(completions)
            .await
            .map_err(|err| End::Fail(status(err)))?;
        for (chunk_id, result) in chunk_ids.into_iter().zip(results) {
            self.ack(
                chunk_id,
                pb::WorkAckKind::Complete,
                result.map(|_| ()),
                None,
            );
        }
        Ok(())
    }

    /// Queues an acknowledgement; `flush_acks` sends what is queued.
    fn ack(
        &mut self,
        chunk_id: i64,
        kind: pb::WorkAckKind,
        outcome: Result<(), Error>,
        lease_expires_at: Option<crate::core::Timestamp>,
    ) {
        let (code, message) = match outcome {
            Ok(()) => (Code::Ok, String::new()),
            Err(err) => {
                let status = status(err);
                (status.code(), status.message().to_owned())
            }
        };
        self.acks.push(pb::WorkAck {
            chunk_id,
            kind: kind.into(),
            code: code as i32,
            message,
            lease_expires_at: lease_expires_at.map(convert::timestamp),
        });
    }

    async fn flush_acks(&mut self) -> Result<(), End> {
        if self.acks.is_empty() {
            return Ok(());
        }
        let acks = std::mem::take(&mut self.acks);
        if self.batch {
            return self
                .send(pb::work_response::Kind::Acks(pb::WorkAcks { acks }))
                .await;
        }
        for ack in acks {
            self.send(pb::work_response::Kind::Ack(ack)).await?;
        }
        Ok(())
    }

    async fn send(&self, kind: pb::work_response::Kind) -> Result<(), End> {
        self.outbound
            .send(Ok(pb::WorkResponse { kind: Some(kind) }))
            .await
            .map_err(|_| End::ClientGone)
    }
}
