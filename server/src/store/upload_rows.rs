//! UploadRetry's rows and their conversion to and from domain types.

use diesel::prelude::*;

use super::rows::{count, to_i32};
use super::schema::{upload_retry_runs, uploads};
use crate::core::uploads::{
    Destination, NewRetryRun, NewUpload, RetryRun, RetrySource, Upload, UploadStatus,
};
use crate::core::{Error, Result, Timestamp};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = uploads)]
pub struct UploadRow {
    pub id: i64,
    pub upload_id: String,
    pub owner: String,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub destination: Option<String>,
    pub blob_key: String,
    pub status: String,
    pub received_bytes: i64,
    pub failure_reason: Option<String>,
    pub delivery_attempts: i32,
    pub max_delivery_attempts: i32,
    pub next_delivery_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub stored_at: Option<i64>,
    pub delivered_at: Option<i64>,
    pub content_pruned_at: Option<i64>,
}

impl UploadRow {
    pub fn into_upload(self) -> Result<Upload> {
        Ok(Upload {
            status: upload_status(&self.status)?,
            upload_id: self.upload_id,
            owner: self.owner,
            file_name: self.file_name,
            content_type: self.content_type,
            size_bytes: bytes(self.size_bytes),
            sha256: self.sha256,
            destination: self.destination.as_deref().map(Destination::from_stored),
            blob_key: self.blob_key,
            received_bytes: bytes(self.received_bytes),
            failure_reason: self.failure_reason,
            delivery_attempts: count(self.delivery_attempts),
            max_delivery_attempts: count(self.max_delivery_attempts),
            next_delivery_at: self.next_delivery_at.map(Timestamp::from_micros),
            created_at: Timestamp::from_micros(self.created_at),
            updated_at: Timestamp::from_micros(self.updated_at),
            stored_at: self.stored_at.map(Timestamp::from_micros),
            delivered_at: self.delivered_at.map(Timestamp::from_micros),
            content_pruned_at: self.content_pruned_at.map(Timestamp::from_micros),
        })
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = uploads)]
pub struct NewUploadRow<'a> {
    pub upload_id: &'a str,
    pub owner: &'a str,
    pub file_name: &'a str,
    pub content_type: &'a str,
    pub size_bytes: i64,
    pub sha256: &'a str,
    pub destination: Option<String>,
    pub blob_key: String,
    pub status: &'static str,
    pub max_delivery_attempts: i32,
    pub created_at: i64,
    pub updated_at: i64,
}

impl<'a> NewUploadRow<'a> {
    pub fn new(upload: &'a NewUpload, blob_key: String, now: Timestamp) -> Self {
        Self {
            upload_id: &upload.upload_id,
            owner: &upload.owner,
            file_name: &upload.file_name,
            content_type: &upload.content_type,
            size_bytes: to_i64(upload.size_bytes),
            sha256: &upload.sha256,
            destination: upload.destination.as_ref().map(Destination::as_text),
            blob_key,
            status: UploadStatus::Pending.as_str(),
            max_delivery_attempts: to_i32(upload.max_delivery_attempts),
            created_at: now.as_micros(),
            updated_at: now.as_micros(),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = upload_retry_runs)]
pub struct RetryRunRow {
    pub id: i64,
    pub source: String,
    pub attempted: i32,
    pub succeeded: i32,
    pub failed: i32,
    pub started_at: i64,
    pub finished_at: i64,
}

impl RetryRunRow {
    pub fn into_run(self) -> Result<RetryRun> {
        Ok(RetryRun {
            id: self.id,
            source: retry_source(&self.source)?,
            attempted: count(self.attempted),
            succeeded: count(self.succeeded),
            failed: count(self.failed),
            started_at: Timestamp::from_micros(self.started_at),
            finished_at: Timestamp::from_micros(self.finished_at),
        })
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = upload_retry_runs)]
pub struct NewRetryRunRow {
    pub source: &'static str,
    pub attempted: i32,
    pub succeeded: i32,
    pub failed: i32,
    pub started_at: i64,
    pub finished_at: i64,
}

impl From<&NewRetryRun> for NewRetryRunRow {
    fn from(run: &NewRetryRun) -> Self {
        Self {
            source: run.source.as_str(),
            attempted: to_i32(run.attempted),
            succeeded: to_i32(run.succeeded),
            failed: to_i32(run.failed),
            started_at: run.started_at.as_micros(),
            finished_at: run.finished_at.as_micros(),
        }
    }
}

pub fn upload_status(text: &str) -> Result<UploadStatus> {
    UploadStatus::parse(text)
        .ok_or_else(|| Error::Internal(format!("unknown upload status {text:?}")))
}

pub fn retry_source(text: &str) -> Result<RetrySource> {
    RetrySource::parse(text)
        .ok_or_else(|| Error::Internal(format!("unknown retry source {text:?}")))
}

/// Sizes are validated far below i64::MAX; saturate rather than wrap just in case.
pub fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn bytes(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
