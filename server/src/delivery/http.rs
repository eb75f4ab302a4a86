//! Delivery by HTTP PUT (a presigned bucket URL, or any endpoint that takes a PUT).

use std::time::Duration;

use tokio_util::io::ReaderStream;

use crate::blobs::BlobReader;
use crate::core::uploads::Upload;

pub struct HttpPut {
    client: reqwest::Client,
}

impl HttpPut {
    pub fn new(attempt_timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(attempt_timeout)
            .connect_timeout(attempt_timeout.min(Duration::from_secs(30)))
            .build()
            .map_err(|err| format!("cannot build the HTTP client: {err}"))?;
        Ok(Self { client })
    }

    pub async fn put(&self, url: &str, upload: &Upload, content: BlobReader) -> Result<(), String> {
        let shown = without_query(url);
        let response = self
            .client
            .put(url)
            .header(http::header::CONTENT_TYPE, &upload.content_type)
            .header(http::header::CONTENT_LENGTH, upload.size_bytes)
            .body(reqwest::Body::wrap_stream(ReaderStream::with_capacity(
                content,
                256 * 1024,
            )))
            .send()
            .await
            .map_err(|err| format!("PUT {shown} failed: {}", error_chain(&err)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(format!("PUT {shown} answered {status}"))
    }
}

/// Presigned URLs carry credentials in the query: never put them in logs or failure reasons.
fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// reqwest's top-level message ("error sending request") hides the cause; name the whole chain.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_query_are_never_shown() {
        assert_eq!(
            without_query("https://b.example/k?X-Amz-Signature=s"),
            "https://b.example/k"
        );
        assert_eq!(without_query("http://h/p"), "http://h/p");
    }
}
