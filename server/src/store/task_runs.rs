//! Scheduler run records, written once for both engines.

macro_rules! impl_task_run_store {
    ($store:ty) => {
        const _: () = {
            use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper};
            use diesel_async::RunQueryDsl;

            use $crate::core::chunks::{Page, PageRequest};
            use $crate::core::tasks::*;
            use $crate::core::{Result, Timestamp};
            use $crate::store::error::TxError;
            use $crate::store::rows::TaskRunRow;
            use $crate::store::schema::task_runs;

            #[async_trait::async_trait]
            impl $crate::store::TaskRunStore for $store {
                async fn start_task_run(&self, run: &NewTaskRun) -> Result<Option<i64>> {
                    let mut conn = self.conn().await?;
                    Ok(diesel::insert_into(task_runs::table)
                        .values((
                            task_runs::task.eq(&run.task),
                            task_runs::slot.eq(run.slot),
                            task_runs::replica_id.eq(&run.replica_id),
                            task_runs::kind.eq(run.kind.as_str()),
                            task_runs::started_at.eq(run.started_at.as_micros()),
                        ))
                        .on_conflict_do_nothing()
                        .returning(task_runs::id)
                        .get_result::<i64>(&mut *conn)
                        .await
                        .optional()
                        .map_err(TxError::from)?)
                }

                async fn finish_task_run(
                    &self,
                    id: i64,
                    finished_at: Timestamp,
                    outcome: RunOutcome,
                    counts: &TaskCounts,
                    error: Option<&str>,
                ) -> Result<()> {
                    let mut conn = self.conn().await?;
                    diesel::update(task_runs::table.filter(task_runs::id.eq(id)))
                        .set((
                            task_runs::finished_at.eq(Some(finished_at.as_micros())),
                            task_runs::outcome.eq(Some(outcome.as_str())),
                            task_runs::counts.eq(encode_counts(counts)),
                            task_runs::error.eq(error),
                        ))
                        .execute(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    Ok(())
                }

                async fn latest_task_runs(&self) -> Result<Vec<TaskRun>> {
                    let mut conn = self.conn().await?;
                    let latest: Vec<Option<i64>> = task_runs::table
                        .group_by(task_runs::task)
                        .select(diesel::dsl::max(task_runs::id))
                        .load(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    let ids: Vec<i64> = latest.into_iter().flatten().collect();
                    let rows: Vec<TaskRunRow> = task_runs::table
                        .filter(task_runs::id.eq_any(&ids))
                        .select(TaskRunRow::as_select())
                        .order(task_runs::task.asc())
                        .load(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    rows.into_iter().map(TaskRunRow::into_run).collect()
                }

                async fn list_task_runs(
                    &self,
                    task: Option<&str>,
                    page: PageRequest,
                ) -> Result<Page<TaskRun>> {
                    let mut conn = self.conn().await?;
                    let mut query = task_runs::table
                        .select(TaskRunRow::as_select())
                        .order(task_runs::id.desc())
                        .limit(i64::from(page.size) + 1)
                        .into_boxed();
                    if let Some(task) = task {
                        query = query.filter(task_runs::task.eq(task.to_owned()));
                    }
                    if let Some(after) = page.after {
                        query = query.filter(task_runs::id.lt(after));
                    }
                    let rows: Vec<TaskRunRow> =
                        query.load(&mut *conn).await.map_err(TxError::from)?;
                    $crate::store::paging::keyset_page(
                        rows,
                        page.size,
                        |row| row.id,
                        TaskRunRow::into_run,
                    )
                }

                async fn prune_task_runs(&self, before: Timestamp) -> Result<u64> {
                    let mut conn = self.conn().await?;
                    let deleted = diesel::delete(
                        task_runs::table.filter(task_runs::started_at.lt(before.as_micros())),
                    )
                    .execute(&mut *conn)
                    .await
                    .map_err(TxError::from)?;
                    Ok(deleted as u64)
                }
            }
        };
    };
}

pub(crate) use impl_task_run_store;
