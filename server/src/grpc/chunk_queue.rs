//! `retryd.v1.ChunkQueue`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use retryd_client::v1 as pb;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::generated::chunk_queue_server::ChunkQueue;
use super::{authorize, convert, error::status, work};
use crate::core::auth::Permission;
use crate::core::chunks::{ChunkSettled, JobProgress};
use crate::core::Error;
use crate::events::EVERY_JOB;
use crate::service::auth::Authenticator;
use crate::service::chunk_queue::{ChunkQueueService, ClaimInput};
use crate::service::paging::next_page_token;

pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct ChunkQueueApi {
    service: Arc<ChunkQueueService>,
    auth: Arc<Authenticator>,
    /// Turns true when the server begins to shut down: long-lived streams end then.
    shutdown: watch::Receiver<bool>,
    /// How often a WatchJob stream re-reads progress when no change was announced.
    watch_fallback: Duration,
}

impl ChunkQueueApi {
    pub fn new(
        service: Arc<ChunkQueueService>,
        auth: Arc<Authenticator>,
        shutdown: watch::Receiver<bool>,
        watch_fallback: Duration,
    ) -> Self {
        Self {
            service,
            auth,
            shutdown,
            watch_fallback,
        }
    }
}

#[tonic::async_trait]
impl ChunkQueue for ChunkQueueApi {
    async fn create_job(
        &self,
        request: Request<pb::CreateJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        authorize(&self.auth, &request, Permission::Write).await?;
        let input = convert::create_job_input(request.into_inner());
        let created = self.service.create_job(input).await.map_err(status)?;
        Ok(Response::new(convert::job(created.job)))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let job = self
            .service
            .get_job(request.into_inner().job_id)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::job(job)))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let status_filter = convert::job_status_filter(request.status).map_err(status)?;
        let page = self
            .service
            .list_jobs(
                request.queue,
                status_filter,
                request.page_size,
                &request.page_token,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: page.items.into_iter().map(convert::job).collect(),
            next_page_token: next_page_token(page.next_after),
        }))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        authorize(&self.auth, &request, Permission::Write).await?;
        let job = self
            .service
            .cancel_job(request.into_inner().job_id)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::job(job)))
    }

    async fn claim_chunks(
        &self,
        request: Request<pb::ClaimChunksRequest>,
    ) -> Result<Response<pb::ClaimChunksResponse>, Status> {
        authorize(&self.auth, &request, Permission::Work).await?;
        let request = request.into_inner();
        let input = ClaimInput {
            queue: request.queue,
            worker_id: request.worker_id,
            max_chunks: request.max_chunks,
            lease_seconds: request.lease_seconds,
            wait_seconds: request.wait_seconds,
        };
        let mut shutdown = self.shutdown.clone();
        // A long poll ends early, empty-handed, when the server shuts down.
        let chunks = tokio::select! {
            chunks = self.service.claim(input) => chunks.map_err(status)?,
            _ = super::until_shutdown(&mut shutdown) => Vec::new(),
        };
        Ok(Response::new(pb::ClaimChunksResponse {
            chunks: chunks.into_iter().map(convert::leased_chunk).collect(),
        }))
    }

    type WorkStream = ResponseStream<pb::WorkResponse>;

    async fn work(
        &self,
        request: Request<Streaming<pb::WorkRequest>>,
    ) -> Result<Response<Self::WorkStream>, Status> {
        authorize(&self.auth, &request, Permission::Work).await?;
        let (sender, receiver) = mpsc::channel(256);
        tokio::spawn(work::serve(
            Arc::clone(&self.service),
            request.into_inner(),
            sender,
            self.shutdown.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn complete_chunk(
        &self,
        request: Request<pb::CompleteChunkRequest>,
    ) -> Result<Response<pb::CompleteChunkResponse>, Status> {
        authorize(&self.auth, &request, Permission::Work).await?;
        let request = request.into_inner();
        let completion = self
            .service
            .completion(request.chunk_id, request.lease_token, request.result)
            .map_err(status)?;
        let mut results = self
            .service
            .complete(vec![completion])
            .await
            .map_err(status)?;
        let settled = results
            .pop()
            .ok_or_else(|| Status::internal("no completion result"))?
            .map_err(status)?;
        Ok(Response::new(pb::CompleteChunkResponse {
            job_id: settled.job_id,
            job_status: convert::job_status(settled.job_status).into(),
        }))
    }

    async fn complete_chunks(
        &self,
        request: Request<pb::CompleteChunksRequest>,
    ) -> Result<Response<pb::CompleteChunksResponse>, Status> {
        authorize(&self.auth, &request, Permission::Work).await?;
        let requested = request.into_inner().completions;
        let limit = self.service.limits().max_claim_batch as usize;
        if requested.len() > limit {
            return Err(status(Error::too_large(
                "completions",
                format!("{} completions, at most {limit} per call", requested.len()),
            )));
        }
        // Each completion gets its own outcome: bad ones are refused, the rest are settled
        // together in one transaction.
        let mut outcomes: Vec<Option<pb::ChunkOutcome>> = Vec::with_capacity(requested.len());
        let mut valid = Vec::new();
        for (index, complete) in requested.into_iter().enumerate() {
            let chunk_id = complete.chunk_id;
            match self
                .service
                .completion(chunk_id, complete.lease_token, complete.result)
            {
                Ok(completion) => {
                    valid.push((index, completion));
                    outcomes.push(None);
                }
                Err(err) => outcomes.push(Some(chunk_outcome(chunk_id, Err(err)))),
            }
        }
        let (indices, completions): (Vec<usize>, Vec<_>) = valid.into_iter().unzip();
        let chunk_ids: Vec<i64> = completions.iter().map(|c| c.chunk_id).collect();
        let results = self.service.complete(completions).await.map_err(status)?;
        for ((index, chunk_id), result) in indices.into_iter().zip(chunk_ids).zip(results) {
            outcomes[index] = Some(chunk_outcome(chunk_id, result));
        }
        Ok(Response::new(pb::CompleteChunksResponse {
            outcomes: outcomes.into_iter().flatten().collect(),
        }))
    }

    async fn fail_chunk(
        &self,
        request: Request<pb::FailChunkRequest>,
    ) -> Result<Response<pb::FailChunkResponse>, Status> {
        authorize(&self.auth, &request, Permission::Work).await?;
        let request = request.into_inner();
        let outcome = self
            .service
            .fail(
                request.chunk_id,
                request.lease_token,
                request.error_message,
                request.retryable,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::FailChunkResponse {
            job_id: outcome.settled.job_id,
            chunk_status: convert::chunk_status(outcome.chunk_status).into(),
            retry_at: outcome.retry_at.map(convert::timestamp),
            attempts: outcome.attempts,
            job_status: convert::job_status(outcome.settled.job_status).into(),
        }))
    }

    async fn extend_lease(
        &self,
        request: Request<pb::ExtendLeaseRequest>,
    ) -> Result<Response<pb::ExtendLeaseResponse>, Status> {
        authorize(&self.auth, &request, Permission::Work).await?;
        let request = request.into_inner();
        let expires_at = self
            .service
            .extend_lease(request.chunk_id, request.lease_token, request.lease_seconds)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ExtendLeaseResponse {
            lease_expires_at: Some(convert::timestamp(expires_at)),
        }))
    }

    async fn get_job_progress(
        &self,
        request: Request<pb::GetJobProgressRequest>,
    ) -> Result<Response<pb::JobProgress>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let progress = self
            .service
            .progress(request.into_inner().job_id)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::progress(progress)))
    }

    type WatchJobStream = ResponseStream<pb::JobProgress>;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        authorize(&self.auth, &request, Permission::Watch).await?;
        let job_id = request.into_inner().job_id;
        // Subscribe before the first read, so a change between the two is not missed.
        let changes = self.service.events().subscribe_jobs();
        let first = self.service.progress(job_id).await.map_err(status)?;
        let (sender, receiver) = mpsc::channel(16);
        tokio::spawn(watch_job(
            Arc::clone(&self.service),
            first,
            changes,
            sender,
            self.shutdown.clone(),
            self.watch_fallback,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn list_chunks(
        &self,
        request: Request<pb::ListChunksRequest>,
    ) -> Result<Response<pb::ListChunksResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let status_filter = convert::chunk_status_filter(request.status).map_err(status)?;
        let page = self
            .service
            .list_chunks(
                request.job_id,
                status_filter,
                request.page_size,
                &request.page_token,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListChunksResponse {
            chunks: page.items.into_iter().map(convert::chunk).collect(),
            next_page_token: next_page_token(page.next_after),
        }))
    }

    async fn retry_failed_chunks(
        &self,
        request: Request<pb::RetryFailedChunksRequest>,
    ) -> Result<Response<pb::RetryFailedChunksResponse>, Status> {
        authorize(&self.auth, &request, Permission::Operate).await?;
        let (reset, job_status) = self
            .service
            .retry_failed_chunks(request.into_inner().job_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RetryFailedChunksResponse {
            reset,
            job_status: convert::job_status(job_status).into(),
        }))
    }

    async fn recover_stuck_chunks(
        &self,
        request: Request<pb::RecoverStuckChunksRequest>,
    ) -> Result<Response<pb::RecoverStuckChunksResponse>, Status> {
        authorize(&self.auth, &request, Permission::Operate).await?;
        let outcome = self.service.recover_stuck_chunks().await.map_err(status)?;
        Ok(Response::new(pb::RecoverStuckChunksResponse {
            recovered: outcome.recovered,
            failed: outcome.failed,
        }))
    }
}

fn chunk_outcome(chunk_id: i64, result: Result<ChunkSettled, Error>) -> pb::ChunkOutcome {
    match result {
        Ok(settled) => pb::ChunkOutcome {
            chunk_id,
            code: 0,
            message: String::new(),
            job_status: convert::job_status(settled.job_status).into(),
        },
        Err(err) => {
            let status = status(err);
            pb::ChunkOutcome {
                chunk_id,
                code: status.code() as i32,
                message: status.message().to_owned(),
                job_status: 0,
            }
        }
    }
}

/// Sends the job's progress whenever it changes, until the job is final, the client leaves or
/// the server shuts down.
async fn watch_job(
    service: Arc<ChunkQueueService>,
    first: JobProgress,
    mut changes: broadcast::Receiver<String>,
    sender: mpsc::Sender<Result<pb::JobProgress, Status>>,
    mut shutdown: watch::Receiver<bool>,
    fallback: Duration,
) {
    let job_id = first.job_id.clone();
    let mut last = first;
    if sender
        .send(Ok(convert::progress(last.clone())))
        .await
        .is_err()
    {
        return;
    }
    while !last.status.is_final() {
        tokio::select! {
            changed = changes.recv() => match changed {
                Ok(changed_job) if changed_job != job_id && changed_job != EVERY_JOB => continue,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tokio::time::sleep(fallback) => {}
            _ = sender.closed() => return,
            _ = super::until_shutdown(&mut shutdown) => {
                let _ = sender.send(Err(Status::unavailable("server is shutting down"))).await;
                return;
            }
        }
        // Many changes arrive in bursts: fold the ones already queued into one read.
        while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = changes.try_recv() {}
        let progress = match service.progress(job_id.clone()).await {
            Ok(progress) => progress,
            Err(err) => {
                let _ = sender.send(Err(status(err))).await;
                return;
            }
        };
        if progress != last {
            last = progress;
            if sender
                .send(Ok(convert::progress(last.clone())))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}
