//! Conversions between SyncRetry's protobuf messages and domain types.

use std::time::Duration;

use retryd_client::v1 as pb;

use super::convert::timestamp;
use super::error::status;
use crate::core::sync::health::{ConnectionHealth, HealthStatus};
use crate::core::sync::input::{
    PushInput, RecordChangeInput, RegisterSourceInput, SyncRetryPolicyInput,
};
use crate::core::sync::records::{
    ChangeResult, ChangeStatus, Conflict, ConflictStatus, ConflictStrategy, Record, Resolution,
    ResolutionKind,
};
use crate::core::sync::snapshots::{CompletedSync, SnapshotInfo};
use crate::core::sync::{
    FailureLog, LeasedSyncTask, Source, SyncRetryPolicy, SyncTask, SyncTaskStatus,
};
use crate::core::{Error, Result, Timestamp};

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn instant(at: &prost_types::Timestamp) -> Timestamp {
    Timestamp::from_micros(
        at.seconds
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(at.nanos) / 1_000),
    )
}

pub fn register_source_input(request: pb::RegisterSourceRequest) -> RegisterSourceInput {
    RegisterSourceInput {
        data_type: request.data_type,
        sync_interval_seconds: request.sync_interval_seconds,
        retry_policy: request.retry_policy.map(|policy| SyncRetryPolicyInput {
            base_delay_ms: policy.base_delay_ms,
            multiplier: policy.multiplier,
            max_retries: policy.max_retries,
            max_delay_ms: policy.max_delay_ms,
        }),
        config: request.config,
    }
}

fn retry_policy(policy: SyncRetryPolicy) -> pb::SyncRetryPolicy {
    pb::SyncRetryPolicy {
        base_delay_ms: millis(policy.base_delay),
        multiplier: policy.multiplier,
        max_retries: Some(policy.max_retries),
        max_delay_ms: millis(policy.max_delay),
    }
}

pub fn connection_health(health: ConnectionHealth) -> pb::ConnectionHealth {
    let status = match health.status {
        HealthStatus::Unknown => pb::ConnectionStatus::Unknown,
        HealthStatus::Healthy => pb::ConnectionStatus::Healthy,
        HealthStatus::Degraded => pb::ConnectionStatus::Degraded,
        HealthStatus::Unhealthy => pb::ConnectionStatus::Unhealthy,
    };
    pb::ConnectionHealth {
        data_type: health.data_type,
        status: status.into(),
        last_check_at: health.last_check_at.map(timestamp),
        item_count: health.item_count,
        error_message: health.error_message.unwrap_or_default(),
        consecutive_failures: health.consecutive_failures,
        last_success_at: health.last_success_at.map(timestamp),
        last_failure_at: health.last_failure_at.map(timestamp),
    }
}

pub fn source(source: Source) -> pb::SyncSource {
    pb::SyncSource {
        data_type: source.data_type,
        sync_interval_seconds: u32::try_from(source.sync_interval.as_secs()).unwrap_or(u32::MAX),
        retry_policy: Some(retry_policy(source.retry_policy)),
        config: source.config,
        next_sync_at: Some(timestamp(source.next_sync_at)),
        current_version: source.current_version.unwrap_or_default(),
        health: Some(connection_health(source.health)),
        created_at: Some(timestamp(source.created_at)),
        updated_at: Some(timestamp(source.updated_at)),
    }
}

fn task_status(status: SyncTaskStatus) -> pb::SyncTaskStatus {
    match status {
        SyncTaskStatus::Pending => pb::SyncTaskStatus::Pending,
        SyncTaskStatus::Processing => pb::SyncTaskStatus::Processing,
        SyncTaskStatus::RetryScheduled => pb::SyncTaskStatus::RetryScheduled,
        SyncTaskStatus::Completed => pb::SyncTaskStatus::Completed,
        SyncTaskStatus::Failed => pb::SyncTaskStatus::Failed,
        SyncTaskStatus::Exhausted => pb::SyncTaskStatus::Exhausted,
        SyncTaskStatus::Cancelled => pb::SyncTaskStatus::Cancelled,
    }
}

pub fn task_status_filter(value: i32) -> Result<Option<SyncTaskStatus>> {
    Ok(match pb::SyncTaskStatus::try_from(value) {
        Ok(pb::SyncTaskStatus::Unspecified) => None,
        Ok(pb::SyncTaskStatus::Pending) => Some(SyncTaskStatus::Pending),
        Ok(pb::SyncTaskStatus::Processing) => Some(SyncTaskStatus::Processing),
        Ok(pb::SyncTaskStatus::RetryScheduled) => Some(SyncTaskStatus::RetryScheduled),
        Ok(pb::SyncTaskStatus::Completed) => Some(SyncTaskStatus::Completed),
        Ok(pb::SyncTaskStatus::Failed) => Some(SyncTaskStatus::Failed),
        Ok(pb::SyncTaskStatus::Exhausted) => Some(SyncTaskStatus::Exhausted),
        Ok(pb::SyncTaskStatus::Cancelled) => Some(SyncTaskStatus::Cancelled),
        Err(_) => {
            return Err(Error::invalid(
                "status",
                format!("unknown sync task status {value}"),
            ))
        }
    })
}

pub fn task(task: SyncTask) -> pb::SyncTask {
    pb::SyncTask {
        task_id: task.task_id,
        data_type: task.data_type,
        status: task_status(task.status).into(),
        retry_count: task.retry_count,
        max_retries: task.max_retries,
        next_retry_at: task.next_retry_at.map(timestamp),
        last_error: task.last_error.unwrap_or_default(),
        worker_id: task.worker_id.unwrap_or_default(),
        lease_expires_at: task.lease_expires_at.map(timestamp),
        created_at: Some(timestamp(task.created_at)),
        updated_at: Some(timestamp(task.updated_at)),
        finished_at: task.finished_at.map(timestamp),
    }
}

pub fn leased_task(task: LeasedSyncTask) -> pb::LeasedSyncTask {
    pb::LeasedSyncTask {
        task_id: task.task_id,
        data_type: task.data_type,
        retry_count: task.retry_count,
        config: task.config,
        lease_token: task.lease_token,
        lease_expires_at: Some(timestamp(task.lease_expires_at)),
        current_version: task.current_version.unwrap_or_default(),
    }
}

pub fn snapshot(snapshot: SnapshotInfo) -> pb::Snapshot {
    pb::Snapshot {
        data_type: snapshot.data_type,
        version: snapshot.version,
        item_count: snapshot.item_count,
        byte_size: snapshot.byte_size,
        sha256: snapshot.checksum,
        content_type: snapshot.content_type,
        created_at: Some(timestamp(snapshot.created_at)),
        current: snapshot.current,
    }
}

pub fn completed(completed: CompletedSync) -> pb::CompleteSyncResponse {
    let outcome = if completed.accepted {
        pb::SnapshotOutcome::Accepted
    } else {
        pb::SnapshotOutcome::Rejected
    };
    pb::CompleteSyncResponse {
        outcome: outcome.into(),
        snapshot: completed.snapshot.map(snapshot),
        reason: completed.reason.unwrap_or_default(),
        task: Some(task(completed.task)),
        health: Some(connection_health(completed.health)),
    }
}

pub fn failure_log(log: FailureLog) -> pb::FailureLog {
    pb::FailureLog {
        id: log.id,
        task_id: log.task_id,
        data_type: log.data_type,
        error_message: log.error_message,
        recoverable: log.recoverable,
        matched_rule: log.matched_rule.unwrap_or_default(),
        retry_count: log.retry_count,
        rolled_back_to_version: log.rolled_back_to.unwrap_or_default(),
        created_at: Some(timestamp(log.created_at)),
    }
}

pub fn push_input(request: pb::PushChangesRequest) -> Result<PushInput> {
    let strategy = match pb::ConflictStrategy::try_from(request.strategy) {
        Ok(pb::ConflictStrategy::Unspecified) => None,
        Ok(pb::ConflictStrategy::LocalWins) => Some(ConflictStrategy::LocalWins),
        Ok(pb::ConflictStrategy::RemoteWins) => Some(ConflictStrategy::RemoteWins),
        Ok(pb::ConflictStrategy::NewestWins) => Some(ConflictStrategy::NewestWins),
        Ok(pb::ConflictStrategy::Manual) => Some(ConflictStrategy::Manual),
        Err(_) => {
            return Err(Error::invalid(
                "strategy",
                format!("unknown conflict strategy {}", request.strategy),
            ))
        }
    };
    Ok(PushInput {
        collection: request.collection,
        client_id: request.client_id,
        strategy,
        changes: request
            .changes
            .into_iter()
            .map(|change| RecordChangeInput {
                change_id: change.change_id,
                record_id: change.record_id,
                base_version: change.base_version,
                updated_at: change.updated_at.as_ref().map(instant),
                payload: change.payload,
                deleted: change.deleted,
            })
            .collect(),
    })
}

pub fn record(record: Record) -> pb::Record {
    pb::Record {
        collection: record.collection,
        record_id: record.record_id,
        version: record.version,
        updated_at: Some(timestamp(record.updated_at)),
        payload: record.payload,
        deleted: record.deleted,
        changed_by: record.changed_by,
        cursor: record.cursor,
    }
}

pub fn change_result(result: ChangeResult) -> pb::ChangeResult {
    let (code, message) = match result.rejection {
        Some(err) => {
            let status = status(err);
            (status.code() as i32, status.message().to_owned())
        }
        None => (0, String::new()),
    };
    pb::ChangeResult {
        change_id: result.change_id,
        record_id: result.record_id,
        status: match result.status {
            ChangeStatus::Applied => pb::ChangeStatus::Applied,
            ChangeStatus::Conflict => pb::ChangeStatus::Conflict,
            ChangeStatus::Rejected => pb::ChangeStatus::Rejected,
        }
        .into(),
        version: result.version,
        server_record: result.server_record.map(record),
        conflict_id: result.conflict_id.unwrap_or_default(),
        code,
        message,
    }
}

pub fn conflict_status_filter(value: i32) -> Result<Option<ConflictStatus>> {
    Ok(match pb::ConflictStatus::try_from(value) {
        Ok(pb::ConflictStatus::Unspecified) => None,
        Ok(pb::ConflictStatus::Open) => Some(ConflictStatus::Open),
        Ok(pb::ConflictStatus::Resolved) => Some(ConflictStatus::Resolved),
        Err(_) => {
            return Err(Error::invalid(
                "status",
                format!("unknown conflict status {value}"),
            ))
        }
    })
}

pub fn resolution(request: &mut pb::ResolveConflictRequest) -> Result<Resolution> {
    Ok(match pb::ConflictResolution::try_from(request.keep) {
        Ok(pb::ConflictResolution::Local) => Resolution::Local,
        Ok(pb::ConflictResolution::Remote) => Resolution::Remote,
        Ok(pb::ConflictResolution::Merged) => Resolution::Merged {
            payload: std::mem::take(&mut request.merged_payload),
            deleted: request.merged_deleted,
        },
        _ => return Err(Error::invalid("keep", "must be LOCAL, REMOTE or MERGED")),
    })
}

fn resolution_kind(kind: ResolutionKind) -> pb::ConflictResolution {
    match kind {
        ResolutionKind::Local => pb::ConflictResolution::Local,
        ResolutionKind::Remote => pb::ConflictResolution::Remote,
        ResolutionKind::Merged => pb::ConflictResolution::Merged,
    }
}

pub fn conflict(conflict: Conflict) -> pb::Conflict {
    pb::Conflict {
        conflict_id: conflict.conflict_id,
        collection: conflict.collection,
        record_id: conflict.record_id,
        client_id: conflict.client_id,
        change_id: conflict.change_id,
        base_version: conflict.base_version,
        local_payload: conflict.local_payload,
        local_deleted: conflict.local_deleted,
        local_updated_at: Some(timestamp(conflict.local_updated_at)),
        server_version: conflict.server_version,
        server_payload: conflict.server_payload,
        server_deleted: conflict.server_deleted,
        server_updated_at: Some(timestamp(conflict.server_updated_at)),
        status: match conflict.status {
            ConflictStatus::Open => pb::ConflictStatus::Open,
            ConflictStatus::Resolved => pb::ConflictStatus::Resolved,
        }
        .into(),
        resolution: conflict
            .resolution
            .map_or(pb::ConflictResolution::Unspecified, resolution_kind)
            .into(),
        resolved_version: conflict.resolved_version.unwrap_or_default(),
        created_at: Some(timestamp(conflict.created_at)),
        resolved_at: conflict.resolved_at.map(timestamp),
    }
}
