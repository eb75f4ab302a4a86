//! SyncRetry's requests as received, and the checks that turn them into validated domain values.
//! Field names in errors are the contract's.

use std::time::Duration;

use super::super::limits::{backoff_multiplier, positive_id, Limits};
use super::super::{Error, Result, Timestamp};
use super::records::{ConflictStrategy, Push, RecordChange};
use super::{NewSource, SyncRetryPolicy, DEFAULT_SYNC_INTERVAL};

/// Longest sync interval: a year.
const MAX_SYNC_INTERVAL_SECONDS: u32 = 366 * 24 * 3600;
/// Most retries a source may ask for.
const MAX_RETRIES: u32 = 100;

/// A retry policy as a client sends it: zeros (and an unset `max_retries`) mean the default.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SyncRetryPolicyInput {
    pub base_delay_ms: u64,
    pub multiplier: f64,
    pub max_retries: Option<u32>,
    pub max_delay_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RegisterSourceInput {
    pub data_type: String,
    pub sync_interval_seconds: u32,
    pub retry_policy: Option<SyncRetryPolicyInput>,
    pub config: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordChangeInput {
    pub change_id: String,
    pub record_id: String,
    pub base_version: u64,
    pub updated_at: Option<Timestamp>,
    pub payload: Vec<u8>,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushInput {
    pub collection: String,
    pub client_id: String,
    pub strategy: Option<ConflictStrategy>,
    pub changes: Vec<RecordChangeInput>,
}

impl Limits {
    pub fn new_source(&self, input: RegisterSourceInput) -> Result<NewSource> {
        let data_type = self.name("data_type", input.data_type)?;
        let sync_interval = match input.sync_interval_seconds {
            0 => DEFAULT_SYNC_INTERVAL,
            n if n > MAX_SYNC_INTERVAL_SECONDS => {
                return Err(Error::invalid(
                    "sync_interval_seconds",
                    format!("{n} s is more than a year"),
                ))
            }
            n => Duration::from_secs(u64::from(n)),
        };
        self.payload("config", input.config.as_bytes())?;
        Ok(NewSource {
            data_type,
            sync_interval,
            retry_policy: sync_retry_policy(input.retry_policy.unwrap_or_default())?,
            config: input.config,
        })
    }

    pub fn push(&self, input: PushInput) -> Result<Push> {
        let collection = self.name("collection", input.collection)?;
        let client_id = self.id("client_id", input.client_id)?;
        if input.changes.len() > self.max_changes_per_push {
            return Err(Error::too_large(
                "changes",
                format!(
                    "{} changes, at most {} per push",
                    input.changes.len(),
                    self.max_changes_per_push
                ),
            ));
        }
        let changes = input
            .changes
            .into_iter()
            .enumerate()
            .map(|(index, change)| {
                let field = |name: &str| format!("changes[{index}].{name}");
                self.payload(&field("payload"), &change.payload)?;
                Ok(RecordChange {
                    change_id: self.id(&field("change_id"), change.change_id)?,
                    record_id: self.id(&field("record_id"), change.record_id)?,
                    base_version: change.base_version,
                    updated_at: change
                        .updated_at
                        .ok_or_else(|| Error::invalid(field("updated_at"), "must be set"))?,
                    payload: change.payload,
                    deleted: change.deleted,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Push {
            collection,
            client_id,
            strategy: input.strategy.unwrap_or(ConflictStrategy::NewestWins),
            changes,
        })
    }

    /// Checks a snapshot's running size against the limit.
    pub fn snapshot_size(&self, bytes: u64) -> Result<()> {
        if bytes > self.max_snapshot_bytes {
            return Err(Error::too_large(
                "data",
                format!(
                    "the snapshot passed {} bytes, the limit",
                    self.max_snapshot_bytes
                ),
            ));
        }
        Ok(())
    }

    pub fn task_id(&self, value: i64) -> Result<i64> {
        positive_id("task_id", value)
    }

    pub fn conflict_id(&self, value: i64) -> Result<i64> {
        positive_id("conflict_id", value)
    }
}

fn sync_retry_policy(input: SyncRetryPolicyInput) -> Result<SyncRetryPolicy> {
    let defaults = SyncRetryPolicy::default();
    let multiplier = backoff_multiplier(input.multiplier, defaults.multiplier)?;
    let max_retries = match input.max_retries {
        None => defaults.max_retries,
        Some(n) if n > MAX_RETRIES => {
            return Err(Error::invalid(
                "retry_policy.max_retries",
                format!("{n}, at most {MAX_RETRIES}"),
            ))
        }
        Some(n) => n,
    };
    let base_delay = match input.base_delay_ms {
        0 => defaults.base_delay,
        ms => Duration::from_millis(ms),
    };
    let max_delay = match input.max_delay_ms {
        0 => defaults.max_delay.max(base_delay),
        ms => Duration::from_millis(ms),
    };
    if max_delay < base_delay {
        return Err(Error::invalid(
            "retry_policy.max_delay_ms",
            "must not be less than base_delay_ms",
        ));
    }
    if max_delay > Duration::from_secs(u64::from(MAX_SYNC_INTERVAL_SECONDS)) {
        return Err(Error::invalid(
            "retry_policy.max_delay_ms",
            "must not be more than a year",
        ));
    }
    Ok(SyncRetryPolicy {
        base_delay,
        multiplier,
        max_retries,
        max_delay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::InvalidArgument { field, .. } | Error::ResourceExhausted { field, .. }) => {
                field
            }
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn bad_source_fields_are_named() {
        let limits = Limits::default();
        let source = |data_type: &str, policy| RegisterSourceInput {
            data_type: data_type.into(),
            retry_policy: Some(policy),
            ..Default::default()
        };
        let ok = limits
            .new_source(source("orders", SyncRetryPolicyInput::default()))
            .unwrap();
        assert_eq!(ok.retry_policy, SyncRetryPolicy::default());
        assert_eq!(ok.sync_interval, DEFAULT_SYNC_INTERVAL);
        assert_eq!(
            field_of(limits.new_source(source("bad type", SyncRetryPolicyInput::default()))),
            "data_type"
        );
        let policy = SyncRetryPolicyInput {
            multiplier: 0.5,
            ..Default::default()
        };
        assert_eq!(
            field_of(limits.new_source(source("orders", policy))),
            "retry_policy.multiplier"
        );
        let policy = SyncRetryPolicyInput {
            base_delay_ms: 10,
            max_delay_ms: 5,
            ..Default::default()
        };
        assert_eq!(
            field_of(limits.new_source(source("orders", policy))),
            "retry_policy.max_delay_ms"
        );
    }

    #[test]
    fn bad_changes_are_named_and_batches_limited() {
        let limits = Limits {
            max_changes_per_push: 1,
            ..Limits::default()
        };
        let change = |updated_at| RecordChangeInput {
            change_id: "c1".into(),
            record_id: "r1".into(),
            base_version: 0,
            updated_at,
            payload: Vec::new(),
            deleted: false,
        };
        let push = |changes| PushInput {
            collection: "notes".into(),
            client_id: "phone".into(),
            strategy: None,
            changes,
        };
        assert_eq!(
            limits
                .push(push(vec![change(Some(Timestamp::default()))]))
                .unwrap()
                .strategy,
            ConflictStrategy::NewestWins
        );
        assert_eq!(
            field_of(limits.push(push(vec![change(None)]))),
            "changes[0].updated_at"
        );
        assert_eq!(
            field_of(limits.push(push(vec![change(None), change(None)]))),
            "changes"
        );
    }
}
