//! Rust client for retryd, generated at build time from the contracts in `proto/retryd/v1`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use retryd_client::v1::{chunk_queue_client::ChunkQueueClient, ChunkInput, CreateJobRequest};
//! let mut queue = ChunkQueueClient::connect("http://127.0.0.1:50051").await?;
//! let job = queue
//!     .create_job(CreateJobRequest {
//!         chunks: vec![ChunkInput { payload: b"hello".to_vec() }],
//!         ..Default::default()
//!     })
//!     .await?
//!     .into_inner();
//! println!("created {}", job.job_id);
//! # Ok(())
//! # }
//! ```

pub mod auth;
pub mod sync_worker;
pub mod worker;

/// Package `retryd.v1`: messages and clients.
pub mod v1 {
    tonic::include_proto!("retryd.v1");
}

pub use prost_types::Timestamp;
pub use tonic;
