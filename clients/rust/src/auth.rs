//! API keys: `ApiKey` adds `authorization: Bearer <key>` to every call of a client.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use retryd_client::auth::ApiKey;
//! use retryd_client::v1::chunk_queue_client::ChunkQueueClient;
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect().await?;
//! let queue = ChunkQueueClient::with_interceptor(channel, ApiKey::new("rtd_…")?);
//! # Ok(())
//! # }
//! ```

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

#[derive(Debug, Clone)]
pub struct ApiKey(MetadataValue<Ascii>);

impl ApiKey {
    /// Fails when the key cannot be sent as a header (it is not printable ASCII).
    pub fn new(key: &str) -> Result<Self, Status> {
        format!("Bearer {key}")
            .parse()
            .map(Self)
            .map_err(|_| Status::invalid_argument("an API key must be printable ASCII"))
    }

    /// Adds the key to one request.
    pub fn authorize<T>(&self, mut request: Request<T>) -> Request<T> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        request
    }
}

impl Interceptor for ApiKey {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        Ok(self.authorize(request))
    }
}
