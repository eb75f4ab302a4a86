//! `retryd.v1.SyncRetry`.

use std::sync::Arc;

use retryd_client::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::chunk_queue::ResponseStream;
use super::generated::sync_retry_server::SyncRetry;
use super::{authorize, error::status, sync_convert as convert};
use crate::core::auth::Permission;
use crate::core::sync::snapshots::CompletedSync;
use crate::core::{Error, Result};
use crate::service::auth::Authenticator;
use crate::service::paging::next_page_token;
use crate::service::sync_retry::{SnapshotWriter, SyncClaimInput, SyncRetryService};

pub struct SyncRetryApi {
    service: Arc<SyncRetryService>,
    auth: Arc<Authenticator>,
}

impl SyncRetryApi {
    pub fn new(service: Arc<SyncRetryService>, auth: Arc<Authenticator>) -> Self {
        Self { service, auth }
    }
}

use pb::complete_sync_request::Kind as Upload;

/// Receives a CompleteSync stream into the writer: data or rows until `end`.
async fn receive_snapshot(
    writer: &mut SnapshotWriter,
    stream: &mut Streaming<pb::CompleteSyncRequest>,
) -> Result<pb::SnapshotEnd, Status> {
    loop {
        let message = stream
            .message()
            .await?
            .ok_or_else(|| status(Error::invalid("end", "the stream ended before `end`")))?;
        match message.kind {
            Some(Upload::Data(data)) => writer.write(&data).await.map_err(status)?,
            Some(Upload::Rows(rows)) => {
                for row in rows.rows {
                    writer.write(&row).await.map_err(status)?;
                    writer.write(b"\n").await.map_err(status)?;
                }
            }
            Some(Upload::End(end)) => return Ok(end),
            Some(Upload::Begin(_)) => {
                return Err(status(Error::invalid("begin", "only the first message")))
            }
            None => return Err(status(Error::invalid("kind", "must be set"))),
        }
    }
}

#[tonic::async_trait]
impl SyncRetry for SyncRetryApi {
    async fn register_source(
        &self,
        request: Request<pb::RegisterSourceRequest>,
    ) -> Result<Response<pb::SyncSource>, Status> {
        authorize(&self.auth, &request, Permission::Write).await?;
        let input = convert::register_source_input(request.into_inner());
        let source = self.service.register_source(input).await.map_err(status)?;
        Ok(Response::new(convert::source(source)))
    }

    async fn list_sources(
        &self,
        request: Request<pb::ListSourcesRequest>,
    ) -> Result<Response<pb::ListSourcesResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let sources = self.service.list_sources().await.map_err(status)?;
        Ok(Response::new(pb::ListSourcesResponse {
            sources: sources.into_iter().map(convert::source).collect(),
        }))
    }

    async fn claim_sync_tasks(
        &self,
        request: Request<pb::ClaimSyncTasksRequest>,
    ) -> Result<Response<pb::ClaimSyncTasksResponse>, Status> {
        authorize(&self.auth, &request, Permission::Work).await?;
        let request = request.into_inner();
        let tasks = self
            .service
            .claim(SyncClaimInput {
                worker_id: request.worker_id,
                data_types: request.data_types,
                max: request.max,
                lease_seconds: request.lease_seconds,
            })
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ClaimSyncTasksResponse {
            tasks: tasks.into_iter().map(convert::leased_task).collect(),
        }))
    }

    async fn extend_sync_lease(
        &self,
        request: Request<pb::ExtendSyncLeaseRequest>,
    ) -> Result<Response<pb::ExtendSyncLeaseResponse>, Status> {
        authorize(&self.auth, &request, Permission::Work).await?;
        let request = request.into_inner();
        let expires_at = self
            .service
            .extend_lease(request.task_id, request.lease_token, request.lease_seconds)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ExtendSyncLeaseResponse {
            lease_expires_at: Some(super::convert::timestamp(expires_at)),
        }))
    }

    async fn complete_sync(
        &self,
        request: Request<Streaming<pb::CompleteSyncRequest>>,
    ) -> Result<Response<pb::CompleteSyncResponse>, Status> {
        authorize(&self.auth, &request, Permission::Work).await?;
        let mut stream = request.into_inner();
        let begin = match stream.message().await? {
            Some(pb::CompleteSyncRequest {
                kind: Some(Upload::Begin(begin)),
            }) => begin,
            _ => {
                return Err(status(Error::invalid(
                    "begin",
                    "the first message must be `begin`",
                )))
            }
        };
        let mut writer = self
            .service
            .begin_snapshot(begin.task_id, begin.lease_token, begin.content_type)
            .await
            .map_err(status)?;
        let end = match receive_snapshot(&mut writer, &mut stream).await {
            Ok(end) => end,
            Err(refused) => {
                writer.discard().await;
                return Err(refused);
            }
        };
        let expected = Some(end.sha256).filter(|sha| !sha.is_empty());
        let completed: CompletedSync = writer
            .finish(end.item_count, expected)
            .await
            .map_err(status)?;
        if !completed.accepted {
            tracing::warn!(
                data_type = completed.task.data_type,
                reason = completed.reason.as_deref().unwrap_or_default(),
                "snapshot rejected; the previous version stays current"
            );
        }
        Ok(Response::new(convert::completed(completed)))
    }

    async fn fail_sync(
        &self,
        request: Request<pb::FailSyncRequest>,
    ) -> Result<Response<pb::FailSyncResponse>, Status> {
        authorize(&self.auth, &request, Permission::Work).await?;
        let request = request.into_inner();
        let failed = self
            .service
            .fail(
                request.task_id,
                request.lease_token,
                request.error_message,
                request.retryable,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::FailSyncResponse {
            task: Some(convert::task(failed.task)),
            recoverable: failed.classification.recoverable,
            matched_rule: failed.classification.matched_rule.unwrap_or_default(),
            health: Some(convert::connection_health(failed.health)),
        }))
    }

    async fn classify_error(
        &self,
        request: Request<pb::ClassifyErrorRequest>,
    ) -> Result<Response<pb::ClassifyErrorResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let classification = self.service.classify(&request.into_inner().message);
        Ok(Response::new(pb::ClassifyErrorResponse {
            recoverable: classification.recoverable,
            matched_rule: classification.matched_rule.unwrap_or_default(),
        }))
    }

    async fn list_retry_queue(
        &self,
        request: Request<pb::ListRetryQueueRequest>,
    ) -> Result<Response<pb::ListRetryQueueResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let status_filter = convert::task_status_filter(request.status).map_err(status)?;
        let page = self
            .service
            .list_tasks(
                request.data_type,
                status_filter,
                request.page_size,
                &request.page_token,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListRetryQueueResponse {
            tasks: page.items.into_iter().map(convert::task).collect(),
            next_page_token: next_page_token(page.next_after),
        }))
    }

    async fn retry_now(
        &self,
        request: Request<pb::RetryNowRequest>,
    ) -> Result<Response<pb::SyncTask>, Status> {
        authorize(&self.auth, &request, Permission::Operate).await?;
        let task = self
            .service
            .retry_now(request.into_inner().task_id)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::task(task)))
    }

    async fn cancel_retry(
        &self,
        request: Request<pb::CancelRetryRequest>,
    ) -> Result<Response<pb::SyncTask>, Status> {
        authorize(&self.auth, &request, Permission::Operate).await?;
        let task = self
            .service
            .cancel(request.into_inner().task_id)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::task(task)))
    }

    async fn list_failure_logs(
        &self,
        request: Request<pb::ListFailureLogsRequest>,
    ) -> Result<Response<pb::ListFailureLogsResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let page = self
            .service
            .failure_logs(request.data_type, request.page_size, &request.page_token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListFailureLogsResponse {
            logs: page.items.into_iter().map(convert::failure_log).collect(),
            next_page_token: next_page_token(page.next_after),
        }))
    }

    type GetDatasetStream = ResponseStream<pb::DatasetPart>;

    async fn get_dataset(
        &self,
        request: Request<pb::GetDatasetRequest>,
    ) -> Result<Response<Self::GetDatasetStream>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let (info, mut reader) = self
            .service
            .open_dataset(request.data_type, request.version)
            .await
            .map_err(status)?;
        // A small channel: parts are read from the database only as fast as the client takes
        // them, so a large snapshot is never held in memory.
        let (sender, receiver) = mpsc::channel(2);
        tokio::spawn(async move {
            use pb::dataset_part::Kind;
            let first = pb::DatasetPart {
                kind: Some(Kind::Snapshot(convert::snapshot(info))),
            };
            if sender.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                let part = match reader.next_part().await {
                    Ok(Some(data)) => Ok(pb::DatasetPart {
                        kind: Some(Kind::Data(data)),
                    }),
                    Ok(None) => return,
                    Err(err) => Err(status(err)),
                };
                let failed = part.is_err();
                if sender.send(part).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn list_snapshots(
        &self,
        request: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let snapshots = self
            .service
            .list_snapshots(request.into_inner().data_type)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListSnapshotsResponse {
            snapshots: snapshots.into_iter().map(convert::snapshot).collect(),
        }))
    }

    async fn rollback_to(
        &self,
        request: Request<pb::RollbackToRequest>,
    ) -> Result<Response<pb::Snapshot>, Status> {
        authorize(&self.auth, &request, Permission::Operate).await?;
        let request = request.into_inner();
        let snapshot = self
            .service
            .rollback_to(request.data_type, request.version)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::snapshot(snapshot)))
    }

    async fn get_connection_health(
        &self,
        request: Request<pb::GetConnectionHealthRequest>,
    ) -> Result<Response<pb::GetConnectionHealthResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let connections = self
            .service
            .connection_health(request.into_inner().data_type)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetConnectionHealthResponse {
            connections: connections
                .into_iter()
                .map(convert::connection_health)
                .collect(),
        }))
    }

    async fn push_changes(
        &self,
        request: Request<pb::PushChangesRequest>,
    ) -> Result<Response<pb::PushChangesResponse>, Status> {
        authorize(&self.auth, &request, Permission::Write).await?;
        let input = convert::push_input(request.into_inner()).map_err(status)?;
        let results = self.service.push(input).await.map_err(status)?;
        Ok(Response::new(pb::PushChangesResponse {
            results: results.into_iter().map(convert::change_result).collect(),
        }))
    }

    async fn pull_changes(
        &self,
        request: Request<pb::PullChangesRequest>,
    ) -> Result<Response<pb::PullChangesResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let pulled = self
            .service
            .pull(request.collection, request.since_cursor, request.limit)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PullChangesResponse {
            records: pulled.records.into_iter().map(convert::record).collect(),
            next_cursor: pulled.next_cursor,
            has_more: pulled.has_more,
        }))
    }

    async fn list_conflicts(
        &self,
        request: Request<pb::ListConflictsRequest>,
    ) -> Result<Response<pb::ListConflictsResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let status_filter = convert::conflict_status_filter(request.status).map_err(status)?;
        let page = self
            .service
            .conflicts(
                request.collection,
                status_filter,
                request.page_size,
                &request.page_token,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListConflictsResponse {
            conflicts: page.items.into_iter().map(convert::conflict).collect(),
            next_page_token: next_page_token(page.next_after),
        }))
    }

    async fn resolve_conflict(
        &self,
        request: Request<pb::ResolveConflictRequest>,
    ) -> Result<Response<pb::Conflict>, Status> {
        authorize(&self.auth, &request, Permission::Operate).await?;
        let mut request = request.into_inner();
        let resolution = convert::resolution(&mut request).map_err(status)?;
        let conflict = self
            .service
            .resolve(request.conflict_id, resolution)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::conflict(conflict)))
    }
}
