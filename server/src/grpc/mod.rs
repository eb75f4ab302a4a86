//! The gRPC adapter: one file per service, conversions in `convert`, and the single mapping from
//! domain errors to status codes in `error`.

pub mod chunk_queue;
pub mod convert;
pub mod device_images;
mod download;
pub mod error;
pub mod health;
pub mod scheduler;
pub mod sync_convert;
pub mod sync_retry;
pub mod upload_retry;
mod work;

use crate::core::auth::Permission;
use crate::service::auth::Authenticator;

/// The server traits generated from `proto/`, and the descriptor set reflection serves.
pub mod generated {
    tonic::include_proto!("retryd.v1");

    pub const DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("retryd_descriptor");
}

/// Checks the call's API key against the permission its RPC needs.
pub async fn authorize<T>(
    auth: &Authenticator,
    request: &tonic::Request<T>,
    permission: Permission,
) -> Result<(), tonic::Status> {
    let header = request
        .metadata()
        .get("authorization")
        .map(|value| value.to_str().unwrap_or_default());
    auth.authorize(header, permission)
        .await
        .map_err(error::status)
}

/// Resolves once the server begins to shut down (or the sender is gone).
pub async fn until_shutdown(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send; drop it here rather than in callers' selects.
    let _ = shutdown.wait_for(|stopping| *stopping).await.map(|_| ());
}
