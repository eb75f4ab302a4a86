//! The in-process scheduler: named periodic tasks, run by one replica at a time.
//!
//! Every tick the scheduler asks the leader elector whether this replica leads; if it does, each
//! enabled task whose current time slot (`now / interval`, aligned to the epoch) has not run yet
//! is run. A run first records its (task, slot) in the database, where the pair is unique, so
//! even while leadership changes hands no slot of a task ever runs twice. Every run is recorded
//! with its outcome and counts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::core::chunks::{Page, PageRequest};
use crate::core::tasks::{slot_of, NewTaskRun, RunKind, RunOutcome, TaskCounts, TaskRun};
use crate::core::{Clock, Error, Result};
use crate::store::{LeaderElector, Store};

pub mod tasks;

/// A unit of periodic work.
#[async_trait]
pub trait Task: Send + Sync {
    fn name(&self) -> &'static str;
    /// Does one run's work and says what it did.
    async fn run(&self) -> Result<TaskCounts>;
}

pub struct ScheduledTask {
    pub task: Arc<dyn Task>,
    pub interval: Duration,
    pub enabled: bool,
}

/// A task as the health services show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    pub name: String,
    pub enabled: bool,
    pub interval: Duration,
    pub last_run: Option<TaskRun>,
}

pub struct Scheduler {
    tasks: Vec<ScheduledTask>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    elector: Arc<dyn LeaderElector>,
    replica_id: String,
    /// The last slot of each task known to be done (by us or another replica).
    done_slots: Mutex<HashMap<&'static str, i64>>,
    leading: AtomicBool,
}

impl Scheduler {
    pub fn new(
        tasks: Vec<ScheduledTask>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        elector: Arc<dyn LeaderElector>,
        replica_id: String,
    ) -> Self {
        Self {
            tasks,
            store,
            clock,
            elector,
            replica_id,
            done_slots: Mutex::new(HashMap::new()),
            leading: AtomicBool::new(false),
        }
    }

    /// Adds tasks before the scheduler starts (each service brings its own).
    pub fn add_tasks(&mut self, tasks: Vec<ScheduledTask>) {
        self.tasks.extend(tasks);
    }

    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// Whether this replica led at the last tick.
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    /// One tick: if this replica leads, runs every enabled task whose slot is due. Returns the
    /// runs it made.
    pub async fn tick(&self) -> Vec<TaskRun> {
        let leads = self.elector.lead().await;
        self.leading.store(leads, Ordering::Relaxed);
        if !leads {
            return Vec::new();
        }
        let mut runs = Vec::new();
        for scheduled in self.tasks.iter().filter(|scheduled| scheduled.enabled) {
            let name = scheduled.task.name();
            let now = self.clock.now();
            let slot = slot_of(now, scheduled.interval);
            if self.slot_done(name) >= Some(slot) {
                continue;
            }
            let run = NewTaskRun {
                task: name.to_owned(),
                slot: Some(slot),
                replica_id: self.replica_id.clone(),
                kind: RunKind::Schedule,
                started_at: now,
            };
            match self.store.start_task_run(&run).await {
                Ok(Some(id)) => {
                    self.mark_done(name, slot);
                    runs.push(self.execute(scheduled.task.as_ref(), id, run).await);
                }
                // Another replica ran this slot already.
                Ok(None) => self.mark_done(name, slot),
                Err(err) => {
                    tracing::warn!(task = name, error = %err, "cannot record a task run; will retry")
                }
            }
        }
        runs
    }

    /// Runs a task now, whatever its schedule, and returns the recorded run.
    pub async fn run_now(&self, name: &str) -> Result<TaskRun> {
        let scheduled = self
            .tasks
            .iter()
            .find(|scheduled| scheduled.task.name() == name)
            .ok_or_else(|| Error::NotFound {
                kind: "task",
                id: name.to_owned(),
            })?;
        let run = NewTaskRun {
            task: name.to_owned(),
            slot: None,
            replica_id: self.replica_id.clone(),
            kind: RunKind::Manual,
            started_at: self.clock.now(),
        };
        let id = self
            .store
            .start_task_run(&run)
            .await?
            .ok_or_else(|| Error::Internal("a manual run was refused".into()))?;
        Ok(self.execute(scheduled.task.as_ref(), id, run).await)
    }

    async fn execute(&self, task: &dyn Task, id: i64, run: NewTaskRun) -> TaskRun {
        let outcome = task.run().await;
        let finished_at = self.clock.now();
        let (result, counts, error) = match outcome {
            Ok(counts) => (RunOutcome::Ok, counts, None),
            Err(err) => {
                tracing::warn!(task = task.name(), error = %err, "task run failed");
                (RunOutcome::Error, Vec::new(), Some(err.to_string()))
            }
        };
        if let Err(err) = self
            .store
            .finish_task_run(id, finished_at, result, &counts, error.as_deref())
            .await
        {
            tracing::warn!(task = task.name(), error = %err, "cannot record the end of a task run");
        }
        TaskRun {
            id,
            task: run.task,
            slot: run.slot,
            replica_id: run.replica_id,
            kind: run.kind,
            started_at: run.started_at,
            finished_at: Some(finished_at),
            outcome: Some(result),
            counts,
            error,
        }
    }

    /// Every configured task with its last run (by any replica).
    pub async fn status(&self) -> Result<Vec<TaskStatus>> {
        let mut latest: HashMap<String, TaskRun> = self
            .store
            .latest_task_runs()
            .await?
            .into_iter()
            .map(|run| (run.task.clone(), run))
            .collect();
        Ok(self
            .tasks
            .iter()
            .map(|scheduled| TaskStatus {
                name: scheduled.task.name().to_owned(),
                enabled: scheduled.enabled,
                interval: scheduled.interval,
                last_run: latest.remove(scheduled.task.name()),
            })
            .collect())
    }

    /// Recorded runs, newest first.
    pub async fn runs(&self, task: Option<&str>, page: PageRequest) -> Result<Page<TaskRun>> {
        self.store.list_task_runs(task, page).await
    }

    /// Ticks every `tick` until the process ends.
    pub fn spawn(self: &Arc<Self>, tick: Duration) -> tokio::task::JoinHandle<()> {
        let scheduler = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(tick);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                scheduler.tick().await;
            }
        })
    }

    fn slot_done(&self, name: &'static str) -> Option<i64> {
        self.done_slots
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(name)
            .copied()
    }

    fn mark_done(&self, name: &'static str, slot: i64) {
        self.done_slots
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(name, slot);
    }
}
