//! The store conformance suite: every store behaviour, run against both engines. A case is
//! written once in `cases.rs`; `conformance!` runs it on a fresh Postgres database and on a
//! fresh SQLite file.

#[path = "../support/mod.rs"]
mod support;

mod cases;
mod device_cases;
mod device_flow;
mod sync_cases;
mod uploads;

macro_rules! conformance {
    ($tests:ident from $cases:ident: $($case:ident),* $(,)?) => {
        mod $tests {
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $case() {
                        let db = crate::support::TestDb::new(crate::support::Engine::Postgres).await;
                        crate::$cases::$case(db.open().await).await;
                    }
                )*
            }
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $case() {
                        let db = crate::support::TestDb::new(crate::support::Engine::Sqlite).await;
                        crate::$cases::$case(db.open().await).await;
                    }
                )*
            }
        }
    };
}

conformance!(
    chunk_queue from cases:
    create_is_idempotent_and_conflicts_on_other_content,
    concurrent_creates_of_one_id_make_one_job,
    claims_take_higher_priority_first_then_oldest,
    claims_skip_chunks_whose_backoff_has_not_ended,
    concurrent_claimers_never_get_the_same_chunk,
    stale_lease_tokens_change_nothing,
    a_repeated_completion_is_harmless,
    a_completion_batch_settles_each_item_on_its_own,
    retryable_failures_back_off_until_attempts_run_out,
    non_retryable_failure_fails_at_once,
    a_failed_chunk_does_not_block_the_others,
    expired_leases_are_recovered_or_failed,
    extended_leases_are_not_recovered,
    released_leases_go_back_to_pending,
    cancel_stops_pending_and_leased_chunks,
    progress_counts_and_status_transitions,
    retry_failed_chunks_resets_attempts,
    jobs_and_chunks_list_in_pages,
    queue_depths_count_by_queue_and_status,
    api_keys_are_stored_by_hash,
    each_task_slot_is_taken_once,
    pruning_deletes_only_old_finished_jobs,
);

conformance!(
    upload_retry from uploads:
    uploads_are_declared_once,
    content_resumes_where_it_stopped,
    a_checksum_mismatch_discards_the_content,
    recorded_progress_never_moves_back,
    failed_deliveries_back_off_then_succeed,
    deliveries_give_up_after_their_attempts_and_a_person_can_retry,
    flushing_reports_each_named_upload,
    one_upload_is_never_delivered_by_two_runs_at_once,
    retry_health_sums_each_source_over_its_window,
    pruning_removes_old_logs_and_delivered_content,
    uploads_list_by_owner_and_status_in_pages,
);

conformance!(
    sync_retry from sync_cases:
    sync_retries_back_off_5_10_20_minutes_then_stop,
    errors_are_classified_by_rule_and_non_recoverable_wins,
    connection_health_follows_failures_and_recovers,
    empty_or_corrupt_data_never_replaces_good_data,
    snapshots_beyond_the_retention_are_pruned,
    each_conflict_strategy_settles_an_offline_edit,
    manual_conflicts_are_resolved_by_a_person,
    pushes_are_idempotent_per_change_id,
    pulling_from_a_cursor_returns_later_changes_in_order,
);

conformance!(
    device_images from device_cases:
    chunks_are_stored_once_in_any_order,
    images_are_announced_once,
    an_image_receiving_at_the_next_wake_times_out_with_a_retry,
    retries_raise_an_alert_and_stop_at_max_retries,
    due_commands_come_highest_priority_first_and_never_expired,
    devices_list_with_pending_and_failed_counts,
);

conformance!(
    device_images_flow from device_flow:
    a_wake_cut_short_is_finished_at_the_next_wake,
    retries_run_out_with_an_alert_and_an_operator_resets_them,
    duplicated_and_out_of_order_chunks_change_nothing,
    an_expired_command_is_never_delivered,
    a_checksum_mismatch_asks_for_every_chunk_again,
    an_interrupted_assembly_is_finished_by_the_sweep,
    a_newer_retry_replaces_the_waiting_one,
    unknown_devices_are_ignored_unless_registered_automatically,
    an_image_whose_chunks_were_all_lost_is_retried_whole,
);
