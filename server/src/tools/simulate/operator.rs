//! The simulator's gRPC side: what an operator does through DeviceImages — register the
//! devices, look at an image, download it.

use std::time::Duration;

use retryd_client::auth::ApiKey;
use retryd_client::tonic::transport::{Channel, Endpoint};
use retryd_client::tonic::{Code, Request};
use retryd_client::v1::device_images_client::DeviceImagesClient;
use retryd_client::v1::{
    DownloadImageRequest, GetImageRequest, ImageStatus, RegisterDeviceRequest,
};
use sha2::{Digest, Sha256};

use super::device::ImageOnServer;

#[derive(Clone)]
pub struct Operator {
    client: DeviceImagesClient<Channel>,
    key: Option<ApiKey>,
}

impl Operator {
    pub async fn connect(server: &str, api_key: Option<&str>) -> Result<Self, String> {
        let channel = Endpoint::from_shared(server.to_owned())
            .map_err(|err| format!("invalid --server {server:?}: {err}"))?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|err| format!("cannot connect to {server}: {err}"))?;
        let key = api_key
            .map(ApiKey::new)
            .transpose()
            .map_err(|status| status.message().to_owned())?;
        Ok(Self {
            client: DeviceImagesClient::new(channel),
            key,
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let request = Request::new(message);
        match &self.key {
            Some(key) => key.authorize(request),
            None => request,
        }
    }

    pub async fn register(&self, mac: &str, name: &str, wake_seconds: u32) -> Result<(), String> {
        let request = self.request(RegisterDeviceRequest {
            mac: mac.into(),
            name: name.into(),
            wake_interval_seconds: wake_seconds,
            next_wake_at: None,
        });
        self.client
            .clone()
            .register_device(request)
            .await
            .map_err(|status| format!("RegisterDevice {mac}: {}", status.message()))?;
        Ok(())
    }

    pub async fn image_on_server(
        &self,
        mac: &str,
        image_name: &str,
    ) -> Result<ImageOnServer, String> {
        let request = self.request(GetImageRequest {
            mac: mac.into(),
            image_name: image_name.into(),
        });
        let image = match self.client.clone().get_image(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::NotFound => return Ok(ImageOnServer::Unknown),
            Err(status) => return Err(format!("GetImage {mac}: {}", status.message())),
        };
        Ok(match ImageStatus::try_from(image.status) {
            Ok(ImageStatus::Complete) => ImageOnServer::Complete,
            Ok(ImageStatus::Failed) => ImageOnServer::Failed {
                retry_count: image.retry_count,
                max_retries: image.max_retries,
            },
            Ok(ImageStatus::Receiving) => ImageOnServer::Receiving,
            Ok(ImageStatus::Pending) => ImageOnServer::Pending,
            _ => return Err(format!("GetImage {mac}: unknown status {}", image.status)),
        })
    }

    /// The SHA-256 of the image's bytes as DownloadImage streams them, checking that the parts
    /// come in order.
    pub async fn download_sha256(&self, mac: &str, image_name: &str) -> Result<[u8; 32], String> {
        let request = self.request(DownloadImageRequest {
            mac: mac.into(),
            image_name: image_name.into(),
        });
        let failed = |status: retryd_client::tonic::Status| {
            format!("DownloadImage {mac} {image_name}: {}", status.message())
        };
        let mut stream = self
            .client
            .clone()
            .download_image(request)
            .await
            .map_err(failed)?
            .into_inner();
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        while let Some(part) = stream.message().await.map_err(failed)? {
            if part.offset != offset {
                return Err(format!(
                    "DownloadImage {mac} {image_name}: a part at offset {} after {offset} bytes",
                    part.offset
                ));
            }
            offset += part.data.len() as u64;
            hasher.update(&part.data);
        }
        Ok(hasher.finalize().into())
    }
}
