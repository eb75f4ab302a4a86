//! `retryd.v1.DeviceImages`: the operator's view of the device fleet. The devices themselves
//! speak MQTT (see `service::device_inbox`).

use std::sync::Arc;
use std::time::Duration;

use retryd_client::v1 as pb;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::chunk_queue::ResponseStream;
use super::convert::devices as convert;
use super::download::blob_stream;
use super::generated::device_images_server::DeviceImages;
use super::{authorize, error::status, until_shutdown};
use crate::core::auth::Permission;
use crate::service::auth::Authenticator;
use crate::service::devices::DeviceService;
use crate::service::paging::next_page_token;

/// Bytes per DownloadImage message: images are small (a camera frame), so smaller parts than
/// DownloadUpload's keep each message well under any client's limit.
const DOWNLOAD_PART_BYTES: usize = 64 * 1024;
/// History events a watcher reads at once; a longer backlog is read in several rounds.
const WATCH_BATCH: u32 = 100;

pub struct DeviceImagesApi {
    service: Arc<DeviceService>,
    auth: Arc<Authenticator>,
    /// Turns true when the server begins to shut down: watch streams end then.
    shutdown: watch::Receiver<bool>,
    /// How often a watcher looks for history when this process announced none: other replicas
    /// (and the MQTT adapter of another replica) write history this one hears nothing of.
    watch_fallback: Duration,
}

impl DeviceImagesApi {
    pub fn new(
        service: Arc<DeviceService>,
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
impl DeviceImages for DeviceImagesApi {
    async fn register_device(
        &self,
        request: Request<pb::RegisterDeviceRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        authorize(&self.auth, &request, Permission::Write).await?;
        let input = convert::register_device_input(request.into_inner()).map_err(status)?;
        let device = self.service.register_device(input).await.map_err(status)?;
        Ok(Response::new(convert::device(device)))
    }

    async fn list_devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let page = self
            .service
            .list_devices(request.page_size, &request.page_token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListDevicesResponse {
            devices: page.items.into_iter().map(convert::device).collect(),
            next_page_token: next_page_token(page.next_after),
        }))
    }

    async fn get_device(
        &self,
        request: Request<pb::GetDeviceRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let device = self
            .service
            .get_device(&request.into_inner().mac)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::device(device)))
    }

    async fn list_images(
        &self,
        request: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let status_filter = convert::image_status_filter(request.status).map_err(status)?;
        let page = self
            .service
            .list_images(
                &request.mac,
                status_filter,
                request.page_size,
                &request.page_token,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListImagesResponse {
            images: page.items.into_iter().map(convert::image).collect(),
            next_page_token: next_page_token(page.next_after),
        }))
    }

    async fn get_image(
        &self,
        request: Request<pb::GetImageRequest>,
    ) -> Result<Response<pb::Image>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let image = self
            .service
            .get_image(&request.mac, &request.image_name)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::image_with_missing_chunks(image)))
    }

    type DownloadImageStream = ResponseStream<pb::DownloadImageResponse>;

    async fn download_image(
        &self,
        request: Request<pb::DownloadImageRequest>,
    ) -> Result<Response<Self::DownloadImageStream>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let (_, reader) = self
            .service
            .download_image(&request.mac, &request.image_name)
            .await
            .map_err(status)?;
        Ok(Response::new(blob_stream(
            reader,
            0,
            DOWNLOAD_PART_BYTES,
            |offset, data| pb::DownloadImageResponse { offset, data },
        )))
    }

    async fn retry_failed_images(
        &self,
        request: Request<pb::RetryFailedImagesRequest>,
    ) -> Result<Response<pb::RetryFailedImagesResponse>, Status> {
        authorize(&self.auth, &request, Permission::Operate).await?;
        let reset = self
            .service
            .retry_failed_images(&request.into_inner().mac)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::retry_reset(reset)))
    }

    async fn queue_command(
        &self,
        request: Request<pb::QueueCommandRequest>,
    ) -> Result<Response<pb::DeviceCommand>, Status> {
        authorize(&self.auth, &request, Permission::Write).await?;
        let input = convert::queue_command_input(request.into_inner()).map_err(status)?;
        let command = self.service.queue_command(input).await.map_err(status)?;
        Ok(Response::new(convert::command(command)))
    }

    async fn list_commands(
        &self,
        request: Request<pb::ListCommandsRequest>,
    ) -> Result<Response<pb::ListCommandsResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let status_filter = convert::command_status_filter(request.status).map_err(status)?;
        let page = self
            .service
            .list_commands(
                &request.mac,
                status_filter,
                request.page_size,
                &request.page_token,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListCommandsResponse {
            commands: page.items.into_iter().map(convert::command).collect(),
            next_page_token: next_page_token(page.next_after),
        }))
    }

    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let page = self
            .service
            .list_alerts(
                &request.mac,
                request.include_acknowledged,
                request.page_size,
                &request.page_token,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListAlertsResponse {
            alerts: page.items.into_iter().map(convert::alert).collect(),
            next_page_token: next_page_token(page.next_after),
        }))
    }

    async fn acknowledge_alert(
        &self,
        request: Request<pb::AcknowledgeAlertRequest>,
    ) -> Result<Response<pb::DeviceAlert>, Status> {
        // Bookkeeping, not a recovery action: whoever may register devices may acknowledge.
        authorize(&self.auth, &request, Permission::Write).await?;
        let alert = self
            .service
            .acknowledge_alert(request.into_inner().alert_id)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::alert(alert)))
    }

    async fn list_wake_sessions(
        &self,
        request: Request<pb::ListWakeSessionsRequest>,
    ) -> Result<Response<pb::ListWakeSessionsResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let page = self
            .service
            .list_wake_sessions(&request.mac, request.page_size, &request.page_token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListWakeSessionsResponse {
            sessions: page.items.into_iter().map(convert::wake_session).collect(),
            next_page_token: next_page_token(page.next_after),
        }))
    }

    async fn list_history(
        &self,
        request: Request<pb::ListHistoryRequest>,
    ) -> Result<Response<pb::ListHistoryResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let page = self
            .service
            .list_history(&request.mac, request.page_size, &request.page_token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListHistoryResponse {
            events: page.items.into_iter().map(convert::history_event).collect(),
            next_page_token: next_page_token(page.next_after),
        }))
    }

    async fn run_timeout_sweep(
        &self,
        request: Request<pb::RunTimeoutSweepRequest>,
    ) -> Result<Response<pb::RunTimeoutSweepResponse>, Status> {
        authorize(&self.auth, &request, Permission::Operate).await?;
        let outcome = self.service.run_timeout_sweep().await.map_err(status)?;
        Ok(Response::new(convert::sweep_outcome(outcome)))
    }

    type WatchDeviceEventsStream = ResponseStream<pb::HistoryEvent>;

    async fn watch_device_events(
        &self,
        request: Request<pb::WatchDeviceEventsRequest>,
    ) -> Result<Response<Self::WatchDeviceEventsStream>, Status> {
        authorize(&self.auth, &request, Permission::Watch).await?;
        let (mac, last_id) = self
            .service
            .watch_start(&request.into_inner().mac)
            .await
            .map_err(status)?;
        let (sender, receiver) = mpsc::channel(16);
        tokio::spawn(watch_events(
            Arc::clone(&self.service),
            mac,
            last_id,
            sender,
            self.shutdown.clone(),
            self.watch_fallback,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// Sends each history event written after `last_id` (of one device, or all), oldest first,
/// until the client leaves or the server shuts down.
async fn watch_events(
    service: Arc<DeviceService>,
    mac: Option<String>,
    mut last_id: i64,
    sender: mpsc::Sender<Result<pb::HistoryEvent, Status>>,
    mut shutdown: watch::Receiver<bool>,
    fallback: Duration,
) {
    let mut written = service.history_written();
    loop {
        // Marked seen before reading: a write during the read wakes the wait below at once.
        written.borrow_and_update();
        let events = match service
            .history_after(mac.as_deref(), last_id, WATCH_BATCH)
            .await
        {
            Ok(events) => events,
            Err(err) => {
                let _ = sender.send(Err(status(err))).await;
                return;
            }
        };
        let backlog = events.len() >= WATCH_BATCH as usize;
        for event in events {
            last_id = last_id.max(event.id);
            if sender
                .send(Ok(convert::history_event(event)))
                .await
                .is_err()
            {
                return;
            }
        }
        if backlog {
            continue;
        }
        tokio::select! {
            changed = written.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(fallback) => {}
            _ = sender.closed() => return,
            _ = until_shutdown(&mut shutdown) => {
                let _ = sender.send(Err(Status::unavailable("server is shutting down"))).await;
                return;
            }
        }
    }
}
