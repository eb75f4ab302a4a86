//! UploadRetry's messages to and from domain types.

use retryd_client::v1 as pb;

use super::timestamp;
use crate::core::uploads::{
    CreateUploadInput, Destination, RetryHealth, RetryOutcome, RetryRun, RetrySource, SourceHealth,
    Upload, UploadRetryResult, UploadStatus,
};
use crate::core::{Error, Result, Timestamp};
use crate::service::uploads::RunReport;

pub fn upload_status(status: UploadStatus) -> pb::UploadStatus {
    match status {
        UploadStatus::Pending => pb::UploadStatus::Pending,
        UploadStatus::Receiving => pb::UploadStatus::Receiving,
        UploadStatus::Stored => pb::UploadStatus::Stored,
        UploadStatus::Delivering => pb::UploadStatus::Delivering,
        UploadStatus::Delivered => pb::UploadStatus::Delivered,
        UploadStatus::Failed => pb::UploadStatus::Failed,
    }
}

pub fn upload_status_filter(value: i32) -> Result<Option<UploadStatus>> {
    super::status_filter(value, "upload", UploadStatus::ALL, upload_status)
}

pub fn create_upload_input(request: pb::CreateUploadRequest) -> CreateUploadInput {
    CreateUploadInput {
        upload_id: request.upload_id,
        owner: request.owner,
        file_name: request.file_name,
        content_type: request.content_type,
        size_bytes: request.size_bytes,
        sha256: request.sha256,
        destination: request.destination,
    }
}

pub fn upload(upload: Upload) -> pb::Upload {
    pb::Upload {
        status: upload_status(upload.status).into(),
        upload_id: upload.upload_id,
        owner: upload.owner,
        file_name: upload.file_name,
        content_type: upload.content_type,
        size_bytes: upload.size_bytes,
        sha256: upload.sha256,
        destination: upload
            .destination
            .as_ref()
            .map(Destination::as_text)
            .unwrap_or_default(),
        received_bytes: upload.received_bytes,
        failure_reason: upload.failure_reason.unwrap_or_default(),
        delivery_attempts: upload.delivery_attempts,
        max_delivery_attempts: upload.max_delivery_attempts,
        next_delivery_at: upload.next_delivery_at.map(timestamp),
        created_at: Some(timestamp(upload.created_at)),
        updated_at: Some(timestamp(upload.updated_at)),
        stored_at: upload.stored_at.map(timestamp),
        delivered_at: upload.delivered_at.map(timestamp),
        content_pruned_at: upload.content_pruned_at.map(timestamp),
    }
}

fn retry_outcome(outcome: RetryOutcome) -> pb::RetryOutcome {
    match outcome {
        RetryOutcome::Delivered => pb::RetryOutcome::Delivered,
        RetryOutcome::RetryScheduled => pb::RetryOutcome::RetryScheduled,
        RetryOutcome::Failed => pb::RetryOutcome::Failed,
        RetryOutcome::AlreadyDone => pb::RetryOutcome::AlreadyDone,
        RetryOutcome::Incomplete => pb::RetryOutcome::Incomplete,
        RetryOutcome::InProgress => pb::RetryOutcome::InProgress,
        RetryOutcome::NotFound => pb::RetryOutcome::NotFound,
        RetryOutcome::GaveUp => pb::RetryOutcome::GaveUp,
    }
}

pub fn retry_run(run: RetryRun) -> pb::RetryRun {
    pb::RetryRun {
        run_id: run.id,
        source: run.source.as_str().to_owned(),
        attempted: run.attempted,
        succeeded: run.succeeded,
        failed: run.failed,
        started_at: Some(timestamp(run.started_at)),
        finished_at: Some(timestamp(run.finished_at)),
    }
}

fn upload_retry_result(result: UploadRetryResult) -> pb::UploadRetryResult {
    pb::UploadRetryResult {
        upload_id: result.upload_id,
        outcome: retry_outcome(result.outcome).into(),
        status: result
            .status
            .map(upload_status)
            .unwrap_or(pb::UploadStatus::Unspecified)
            .into(),
        error: result.error.unwrap_or_default(),
    }
}

pub fn run_report(report: RunReport) -> pb::RetryRunResult {
    pb::RetryRunResult {
        run: Some(retry_run(report.run)),
        uploads: report
            .uploads
            .into_iter()
            .map(upload_retry_result)
            .collect(),
    }
}

/// A source filter: empty means "any".
pub fn retry_source_filter(text: &str) -> Result<Option<RetrySource>> {
    if text.is_empty() {
        return Ok(None);
    }
    RetrySource::parse(text).map(Some).ok_or_else(|| {
        Error::invalid(
            "source",
            "must be one of client-flush, manual, scheduled (or empty for all)",
        )
    })
}

/// A time bound from a request; `field` names it in errors.
pub fn time_bound(field: &str, at: Option<prost_types::Timestamp>) -> Result<Option<Timestamp>> {
    let Some(at) = at else { return Ok(None) };
    if !(0..1_000_000_000).contains(&at.nanos) {
        return Err(Error::invalid(field, "nanos must be in [0, 1e9)"));
    }
    let micros = at
        .seconds
        .checked_mul(1_000_000)
        .and_then(|micros| micros.checked_add(i64::from(at.nanos / 1_000)))
        .ok_or_else(|| Error::invalid(field, "out of range"))?;
    Ok(Some(Timestamp::from_micros(micros)))
}

fn source_health(health: SourceHealth) -> pb::SourceHealth {
    pb::SourceHealth {
        source: health
            .source
            .map(|source| source.as_str().to_owned())
            .unwrap_or_default(),
        success_rate_percent: health.success_rate_percent(),
        runs: health.runs,
        attempted: health.attempted,
        succeeded: health.succeeded,
        failed: health.failed,
    }
}

pub fn retry_health(health: RetryHealth) -> pb::RetryHealth {
    pb::RetryHealth {
        window_start: Some(timestamp(health.window_start)),
        window_end: Some(timestamp(health.window_end)),
        sources: health.sources.into_iter().map(source_health).collect(),
        total: Some(source_health(health.total)),
    }
}
