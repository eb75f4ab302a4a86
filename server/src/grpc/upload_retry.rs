//! `retryd.v1.UploadRetry`.

use std::sync::Arc;
use std::time::Duration;

use retryd_client::v1 as pb;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use super::chunk_queue::ResponseStream;
use super::convert::uploads as convert;
use super::download::blob_stream;
use super::generated::upload_retry_server::UploadRetry;
use super::{authorize, error::status, until_shutdown};
use crate::core::auth::Permission;
use crate::core::uploads::{RetryRunFilter, UploadFilter};
use crate::core::{Error, Result};
use crate::service::auth::Authenticator;
use crate::service::paging::next_page_token;
use crate::service::uploads::UploadService;

/// Bytes per DownloadUpload message.
const DOWNLOAD_PART_BYTES: usize = 1024 * 1024;

pub struct UploadRetryApi {
    service: Arc<UploadService>,
    auth: Arc<Authenticator>,
    shutdown: watch::Receiver<bool>,
}

impl UploadRetryApi {
    pub fn new(
        service: Arc<UploadService>,
        auth: Arc<Authenticator>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            service,
            auth,
            shutdown,
        }
    }
}

/// Receives one UploadContent call. It runs in a task of its own: when the client goes away the
/// server drops the call's future, but this task still sees the stream end and records what
/// arrived, so the client resumes from there.
async fn receive(
    service: Arc<UploadService>,
    mut parts: Streaming<pb::UploadContentRequest>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<pb::Upload, Status> {
    let first = match parts.message().await? {
        Some(first) => first,
        None => return Err(status(Error::invalid("upload_id", "the call sent no part"))),
    };
    let mut receiving = service
        .begin_receiving(first.upload_id.clone(), first.offset)
        .await
        .map_err(status)?;
    let mut outcome = receiving
        .append(&first.upload_id, first.offset, first.data)
        .await
        .map_err(status);
    while outcome.is_ok() {
        let next = tokio::select! {
            next = parts.message() => next,
            _ = until_shutdown(&mut shutdown) => Err(Status::unavailable(
                "the server is shutting down: resume at received_bytes on another call",
            )),
        };
        outcome = match next {
            Ok(Some(part)) => receiving
                .append(&part.upload_id, part.offset, part.data)
                .await
                .map_err(status),
            Ok(None) => break,
            Err(lost) => Err(lost),
        };
    }
    let upload_id = receiving.upload_id().to_owned();
    let ended = receiving.end().await;
    outcome?;
    match ended {
        Ok(upload) => Ok(convert::upload(upload)),
        Err(err) => {
            tracing::warn!(upload_id, error = %err, "cannot record received bytes");
            Err(status(err))
        }
    }
}

#[tonic::async_trait]
impl UploadRetry for UploadRetryApi {
    async fn create_upload(
        &self,
        request: Request<pb::CreateUploadRequest>,
    ) -> Result<Response<pb::Upload>, Status> {
        authorize(&self.auth, &request, Permission::Write).await?;
        let input = convert::create_upload_input(request.into_inner());
        let upload = self.service.create_upload(input).await.map_err(status)?;
        Ok(Response::new(convert::upload(upload)))
    }

    async fn get_upload(
        &self,
        request: Request<pb::GetUploadRequest>,
    ) -> Result<Response<pb::Upload>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let upload = self
            .service
            .get_upload(request.into_inner().upload_id)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::upload(upload)))
    }

    async fn upload_content(
        &self,
        request: Request<Streaming<pb::UploadContentRequest>>,
    ) -> Result<Response<pb::Upload>, Status> {
        authorize(&self.auth, &request, Permission::Write).await?;
        let call = tokio::spawn(receive(
            Arc::clone(&self.service),
            request.into_inner(),
            self.shutdown.clone(),
        ));
        let upload = call
            .await
            .map_err(|err| Status::internal(format!("upload task failed: {err}")))??;
        Ok(Response::new(upload))
    }

    type DownloadUploadStream = ResponseStream<pb::DownloadUploadResponse>;

    async fn download_upload(
        &self,
        request: Request<pb::DownloadUploadRequest>,
    ) -> Result<Response<Self::DownloadUploadStream>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let (upload, reader) = self
            .service
            .download(request.upload_id, request.offset)
            .await
            .map_err(status)?;
        Ok(Response::new(blob_stream(
            reader,
            request.offset,
            DOWNLOAD_PART_BYTES,
            move |offset, data| pb::DownloadUploadResponse {
                upload_id: upload.upload_id.clone(),
                offset,
                data,
            },
        )))
    }

    async fn list_uploads(
        &self,
        request: Request<pb::ListUploadsRequest>,
    ) -> Result<Response<pb::ListUploadsResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let filter = UploadFilter {
            owner: Some(request.owner).filter(|owner| !owner.is_empty()),
            status: convert::upload_status_filter(request.status).map_err(status)?,
        };
        let page = self
            .service
            .list_uploads(filter, request.page_size, &request.page_token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListUploadsResponse {
            uploads: page.items.into_iter().map(convert::upload).collect(),
            next_page_token: next_page_token(page.next_after),
        }))
    }

    async fn flush_pending(
        &self,
        request: Request<pb::FlushPendingRequest>,
    ) -> Result<Response<pb::RetryRunResult>, Status> {
        authorize(&self.auth, &request, Permission::Write).await?;
        let report = self
            .service
            .flush_pending(request.into_inner().upload_ids)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::run_report(report)))
    }

    async fn trigger_retry(
        &self,
        request: Request<pb::TriggerRetryRequest>,
    ) -> Result<Response<pb::RetryRunResult>, Status> {
        authorize(&self.auth, &request, Permission::Operate).await?;
        let report = self
            .service
            .trigger_retry(request.into_inner().upload_ids)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::run_report(report)))
    }

    async fn list_retry_runs(
        &self,
        request: Request<pb::ListRetryRunsRequest>,
    ) -> Result<Response<pb::ListRetryRunsResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let filter = RetryRunFilter {
            source: convert::retry_source_filter(&request.source).map_err(status)?,
            started_at_or_after: convert::time_bound("started_after", request.started_after)
                .map_err(status)?,
            started_before: convert::time_bound("started_before", request.started_before)
                .map_err(status)?,
        };
        let page = self
            .service
            .list_retry_runs(filter, request.page_size, &request.page_token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListRetryRunsResponse {
            runs: page.items.into_iter().map(convert::retry_run).collect(),
            next_page_token: next_page_token(page.next_after),
        }))
    }

    async fn get_retry_health(
        &self,
        request: Request<pb::GetRetryHealthRequest>,
    ) -> Result<Response<pb::RetryHealth>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let window = match request.into_inner().window_seconds {
            0 => None,
            seconds => Some(Duration::from_secs(u64::from(seconds))),
        };
        let health = self.service.retry_health(window).await.map_err(status)?;
        Ok(Response::new(convert::retry_health(health)))
    }
}
