//! Delivering stored uploads to their destinations. One attempt either hands the whole file over
//! or fails with a reason; retries, backoff and leases are the upload service's business.

use std::time::Duration;

use crate::blobs::BlobReader;
use crate::core::uploads::{Destination, Upload};

mod directory;
mod http;

pub struct Deliveries {
    http: http::HttpPut,
}

impl Deliveries {
    /// `attempt_timeout` bounds one attempt from connecting to the destination's answer.
    pub fn new(attempt_timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            http: http::HttpPut::new(attempt_timeout)?,
        })
    }

    /// One attempt: `Err` carries the reason, in words an operator can act on.
    pub async fn deliver(&self, upload: &Upload, content: BlobReader) -> Result<(), String> {
        match &upload.destination {
            Some(Destination::Http(url)) => self.http.put(url, upload, content).await,
            Some(Destination::Directory(dir)) => {
                directory::copy_into(dir, &upload.file_name, content).await
            }
            None => Err("the upload has no destination".to_owned()),
        }
    }
}
