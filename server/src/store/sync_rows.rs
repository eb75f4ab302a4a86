//! SyncRetry's rows as the tables hold them, and their conversion to domain types.

use std::time::Duration;

use diesel::prelude::*;

use super::rows::count;
use super::schema::{
    sync_conflicts, sync_failure_logs, sync_records, sync_snapshots, sync_sources, sync_tasks,
};
use crate::core::sync::health::{ConnectionHealth, HealthStatus};
use crate::core::sync::records::{Conflict, ConflictStatus, Record, ResolutionKind};
use crate::core::sync::snapshots::SnapshotInfo;
use crate::core::sync::{FailureLog, Source, SyncRetryPolicy, SyncTask, SyncTaskStatus};
use crate::core::{Error, Result, Timestamp};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sync_sources)]
pub struct SourceRow {
    pub data_type: String,
    pub sync_interval_us: i64,
    pub retry_base_delay_us: i64,
    pub retry_multiplier: f64,
    pub retry_max_retries: i32,
    pub retry_max_delay_us: i64,
    pub config: String,
    pub next_sync_at: i64,
    pub current_version: Option<i64>,
    pub last_version: i64,
    pub health_status: String,
    pub last_check_at: Option<i64>,
    pub item_count: i64,
    pub health_error: Option<String>,
    pub consecutive_failures: i32,
    pub last_success_at: Option<i64>,
    pub last_failure_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl SourceRow {
    pub fn retry_policy(&self) -> SyncRetryPolicy {
        SyncRetryPolicy {
            base_delay: micros(self.retry_base_delay_us),
            multiplier: self.retry_multiplier,
            max_retries: count(self.retry_max_retries),
            max_delay: micros(self.retry_max_delay_us),
        }
    }

    pub fn health(&self) -> Result<ConnectionHealth> {
        Ok(ConnectionHealth {
            data_type: self.data_type.clone(),
            status: HealthStatus::parse(&self.health_status).ok_or_else(|| {
                Error::Internal(format!("unknown health status {:?}", self.health_status))
            })?,
            last_check_at: self.last_check_at.map(Timestamp::from_micros),
            item_count: unsigned(self.item_count),
            error_message: self.health_error.clone(),
            consecutive_failures: count(self.consecutive_failures),
            last_success_at: self.last_success_at.map(Timestamp::from_micros),
            last_failure_at: self.last_failure_at.map(Timestamp::from_micros),
        })
    }

    pub fn into_source(self) -> Result<Source> {
        Ok(Source {
            health: self.health()?,
            retry_policy: self.retry_policy(),
            sync_interval: micros(self.sync_interval_us),
            current_version: self.current_version.map(unsigned),
            next_sync_at: Timestamp::from_micros(self.next_sync_at),
            created_at: Timestamp::from_micros(self.created_at),
            updated_at: Timestamp::from_micros(self.updated_at),
            data_type: self.data_type,
            config: self.config,
        })
    }
}

/// The health columns of a source, as written after an outcome.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = sync_sources, treat_none_as_null = true)]
pub struct HealthChanges {
    pub health_status: &'static str,
    pub last_check_at: Option<i64>,
    pub item_count: i64,
    pub health_error: Option<String>,
    pub consecutive_failures: i32,
    pub last_success_at: Option<i64>,
    pub last_failure_at: Option<i64>,
}

impl HealthChanges {
    pub fn of(health: &ConnectionHealth) -> Self {
        Self {
            health_status: health.status.as_str(),
            last_check_at: health.last_check_at.map(Timestamp::as_micros),
            item_count: signed(health.item_count),
            health_error: health.error_message.clone(),
            consecutive_failures: i32::try_from(health.consecutive_failures).unwrap_or(i32::MAX),
            last_success_at: health.last_success_at.map(Timestamp::as_micros),
            last_failure_at: health.last_failure_at.map(Timestamp::as_micros),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sync_tasks)]
pub struct SyncTaskRow {
    pub id: i64,
    pub data_type: String,
    pub status: String,
    pub retry_count: i32,
    pub max_retries: i32,
    pub next_retry_at: Option<i64>,
    pub lease_expires_at: Option<i64>,
    pub worker_id: Option<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

impl SyncTaskRow {
    pub fn status(&self) -> Result<SyncTaskStatus> {
        SyncTaskStatus::parse(&self.status)
            .ok_or_else(|| Error::Internal(format!("unknown sync task status {:?}", self.status)))
    }

    pub fn into_task(self) -> Result<SyncTask> {
        Ok(SyncTask {
            status: self.status()?,
            task_id: self.id,
            data_type: self.data_type,
            retry_count: count(self.retry_count),
            max_retries: count(self.max_retries),
            next_retry_at: self.next_retry_at.map(Timestamp::from_micros),
            last_error: self.last_error,
            worker_id: self.worker_id,
            lease_expires_at: self.lease_expires_at.map(Timestamp::from_micros),
            created_at: Timestamp::from_micros(self.created_at),
            updated_at: Timestamp::from_micros(self.updated_at),
            finished_at: self.finished_at.map(Timestamp::from_micros),
        })
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sync_failure_logs)]
pub struct FailureLogRow {
    pub id: i64,
    pub task_id: i64,
    pub data_type: String,
    pub error_message: String,
    pub recoverable: bool,
    pub matched_rule: String,
    pub retry_count: i32,
    pub rolled_back_to: Option<i64>,
    pub created_at: i64,
}

impl FailureLogRow {
    pub fn into_log(self) -> FailureLog {
        FailureLog {
            id: self.id,
            task_id: self.task_id,
            data_type: self.data_type,
            error_message: self.error_message,
            recoverable: self.recoverable,
            matched_rule: Some(self.matched_rule).filter(|rule| !rule.is_empty()),
            retry_count: count(self.retry_count),
            rolled_back_to: self.rolled_back_to.map(unsigned),
            created_at: Timestamp::from_micros(self.created_at),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sync_snapshots)]
pub struct SnapshotRow {
    pub id: i64,
    pub data_type: String,
    pub version: Option<i64>,
    pub item_count: i64,
    pub byte_size: i64,
    pub checksum: String,
    pub content_type: String,
    pub created_at: i64,
}

impl SnapshotRow {
    pub fn into_info(self, current_version: Option<i64>) -> SnapshotInfo {
        SnapshotInfo {
            current: self.version.is_some() && self.version == current_version,
            version: self.version.map(unsigned).unwrap_or(0),
            data_type: self.data_type,
            item_count: unsigned(self.item_count),
            byte_size: unsigned(self.byte_size),
            checksum: self.checksum,
            content_type: self.content_type,
            created_at: Timestamp::from_micros(self.created_at),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sync_records)]
pub struct RecordRow {
    pub collection: String,
    pub record_id: String,
    pub version: i64,
    pub payload: Vec<u8>,
    pub deleted: bool,
    pub updated_at: i64,
    pub changed_by: String,
    pub seq: i64,
}

impl RecordRow {
    pub fn into_record(self) -> Record {
        Record {
            collection: self.collection,
            record_id: self.record_id,
            version: unsigned(self.version),
            updated_at: Timestamp::from_micros(self.updated_at),
            payload: self.payload,
            deleted: self.deleted,
            changed_by: self.changed_by,
            cursor: unsigned(self.seq),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sync_conflicts)]
pub struct ConflictRow {
    pub id: i64,
    pub collection: String,
    pub record_id: String,
    pub client_id: String,
    pub change_id: String,
    pub base_version: i64,
    pub local_payload: Vec<u8>,
    pub local_deleted: bool,
    pub local_updated_at: i64,
    pub server_version: i64,
    pub server_payload: Vec<u8>,
    pub server_deleted: bool,
    pub server_updated_at: i64,
    pub status: String,
    pub resolution: Option<String>,
    pub resolved_version: Option<i64>,
    pub created_at: i64,
    pub resolved_at: Option<i64>,
}

impl ConflictRow {
    pub fn into_conflict(self) -> Result<Conflict> {
        Ok(Conflict {
            status: ConflictStatus::parse(&self.status).ok_or_else(|| {
                Error::Internal(format!("unknown conflict status {:?}", self.status))
            })?,
            resolution: self.resolution.as_deref().and_then(ResolutionKind::parse),
            conflict_id: self.id,
            collection: self.collection,
            record_id: self.record_id,
            client_id: self.client_id,
            change_id: self.change_id,
            base_version: unsigned(self.base_version),
            local_payload: self.local_payload,
            local_deleted: self.local_deleted,
            local_updated_at: Timestamp::from_micros(self.local_updated_at),
            server_version: unsigned(self.server_version),
            server_payload: self.server_payload,
            server_deleted: self.server_deleted,
            server_updated_at: Timestamp::from_micros(self.server_updated_at),
            resolved_version: self.resolved_version.map(unsigned),
            created_at: Timestamp::from_micros(self.created_at),
            resolved_at: self.resolved_at.map(Timestamp::from_micros),
        })
    }
}

/// Versions, counts and sizes are never negative in the tables.
pub fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Validated values are far below i64::MAX; saturate rather than wrap just in case.
pub fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub fn duration_micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

fn micros(value: i64) -> Duration {
    Duration::from_micros(unsigned(value))
}
