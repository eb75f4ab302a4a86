//! The tables as diesel sees them. Both engines' migrations create the same columns with types
//! that map to the same diesel SQL types, so one schema (and one set of queries) serves both.

diesel::table! {
    jobs (id) {
        id -> BigInt,
        job_id -> Text,
        queue -> Text,
        status -> Text,
        priority -> Integer,
        max_attempts -> Integer,
        backoff_initial_us -> BigInt,
        backoff_multiplier -> Double,
        backoff_max_us -> BigInt,
        total_chunks -> Integer,
        completed_chunks -> Integer,
        failed_chunks -> Integer,
        content_hash -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        finished_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    chunks (id) {
        id -> BigInt,
        job_id -> Text,
        chunk_index -> Integer,
        queue -> Text,
        priority -> Integer,
        status -> Text,
        payload -> Binary,
        result -> Nullable<Binary>,
        attempts -> Integer,
        max_attempts -> Integer,
        run_at -> BigInt,
        lease_token -> Nullable<Text>,
        lease_expires_at -> Nullable<BigInt>,
        worker_id -> Nullable<Text>,
        last_error -> Nullable<Text>,
        created_at -> BigInt,
        started_at -> Nullable<BigInt>,
        completed_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    api_keys (key_id) {
        key_id -> Text,
        secret_hash -> Text,
        role -> Text,
        created_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(jobs, chunks);

diesel::table! {
    task_runs (id) {
        id -> BigInt,
        task -> Text,
        slot -> Nullable<BigInt>,
        replica_id -> Text,
        kind -> Text,
        started_at -> BigInt,
        finished_at -> Nullable<BigInt>,
        outcome -> Nullable<Text>,
        counts -> Text,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    uploads (id) {
        id -> BigInt,
        upload_id -> Text,
        owner -> Text,
        file_name -> Text,
        content_type -> Text,
        size_bytes -> BigInt,
        sha256 -> Text,
        destination -> Nullable<Text>,
        blob_key -> Text,
        status -> Text,
        received_bytes -> BigInt,
        failure_reason -> Nullable<Text>,
        delivery_attempts -> Integer,
        max_delivery_attempts -> Integer,
        next_delivery_at -> Nullable<BigInt>,
        delivery_token -> Nullable<Text>,
        delivery_lease_until -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        stored_at -> Nullable<BigInt>,
        delivered_at -> Nullable<BigInt>,
        content_pruned_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    upload_retry_runs (id) {
        id -> BigInt,
        source -> Text,
        attempted -> Integer,
        succeeded -> Integer,
        failed -> Integer,
        started_at -> BigInt,
        finished_at -> BigInt,
    }
}

diesel::table! {
    sync_sources (data_type) {
        data_type -> Text,
        sync_interval_us -> BigInt,
        retry_base_delay_us -> BigInt,
        retry_multiplier -> Double,
        retry_max_retries -> Integer,
        retry_max_delay_us -> BigInt,
        config -> Text,
        next_sync_at -> BigInt,
        current_version -> Nullable<BigInt>,
        last_version -> BigInt,
        health_status -> Text,
        last_check_at -> Nullable<BigInt>,
        item_count -> BigInt,
        health_error -> Nullable<Text>,
        consecutive_failures -> Integer,
        last_success_at -> Nullable<BigInt>,
        last_failure_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    sync_tasks (id) {
        id -> BigInt,
        data_type -> Text,
        status -> Text,
        retry_count -> Integer,
        max_retries -> Integer,
        next_retry_at -> Nullable<BigInt>,
        lease_token -> Nullable<Text>,
        lease_expires_at -> Nullable<BigInt>,
        worker_id -> Nullable<Text>,
        last_error -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        finished_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    sync_failure_logs (id) {
        id -> BigInt,
        task_id -> BigInt,
        data_type -> Text,
        error_message -> Text,
        recoverable -> Bool,
        matched_rule -> Text,
        retry_count -> Integer,
        rolled_back_to -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    sync_snapshots (id) {
        id -> BigInt,
        data_type -> Text,
        task_id -> BigInt,
        version -> Nullable<BigInt>,
        item_count -> BigInt,
        byte_size -> BigInt,
        checksum -> Text,
        content_type -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    sync_snapshot_parts (snapshot_id, part_index) {
        snapshot_id -> BigInt,
        part_index -> Integer,
        data -> Binary,
    }
}

diesel::table! {
    sync_collections (collection) {
        collection -> Text,
        last_seq -> BigInt,
    }
}

diesel::table! {
    sync_records (collection, record_id) {
        collection -> Text,
        record_id -> Text,
        version -> BigInt,
        payload -> Binary,
        deleted -> Bool,
        updated_at -> BigInt,
        changed_by -> Text,
        seq -> BigInt,
    }
}

diesel::table! {
    sync_pushes (collection, client_id, change_id) {
        collection -> Text,
        client_id -> Text,
        change_id -> Text,
        content_hash -> Text,
        status -> Text,
        version -> BigInt,
        conflict_id -> Nullable<BigInt>,
        message -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    sync_conflicts (id) {
        id -> BigInt,
        collection -> Text,
        record_id -> Text,
        client_id -> Text,
        change_id -> Text,
        base_version -> BigInt,
        local_payload -> Binary,
        local_deleted -> Bool,
        local_updated_at -> BigInt,
        server_version -> BigInt,
        server_payload -> Binary,
        server_deleted -> Bool,
        server_updated_at -> BigInt,
        status -> Text,
        resolution -> Nullable<Text>,
        resolved_version -> Nullable<BigInt>,
        created_at -> BigInt,
        resolved_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    devices (id) {
        id -> BigInt,
        mac -> Text,
        name -> Text,
        status -> Text,
        wake_interval_seconds -> Integer,
        next_wake_at -> Nullable<BigInt>,
        last_seen_at -> Nullable<BigInt>,
        firmware -> Text,
        battery_percent -> Integer,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    device_wake_sessions (id) {
        id -> BigInt,
        device_id -> BigInt,
        status -> Text,
        started_at -> BigInt,
        ended_at -> Nullable<BigInt>,
        chunks_sent -> Integer,
        chunks_total -> Integer,
        chunks_missing -> Text,
        firmware -> Text,
        battery_percent -> Integer,
        battery_millivolts -> Integer,
        wifi_retries -> Integer,
        rssi_dbm -> Integer,
        error_codes -> Text,
    }
}

diesel::table! {
    device_images (id) {
        id -> BigInt,
        device_id -> BigInt,
        image_name -> Text,
        status -> Text,
        total_chunks -> Integer,
        size_bytes -> BigInt,
        sha256 -> Text,
        chunk_bitmap -> Binary,
        chunks_received -> Integer,
        retry_count -> Integer,
        max_retries -> Integer,
        failed_at -> Nullable<BigInt>,
        timeout_reason -> Nullable<Text>,
        blob_key -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        completed_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    device_image_chunks (image_id, chunk_index) {
        image_id -> BigInt,
        chunk_index -> Integer,
        data -> Binary,
    }
}

diesel::table! {
    device_commands (id) {
        id -> BigInt,
        device_id -> BigInt,
        command_type -> Text,
        payload -> Binary,
        priority -> Integer,
        scheduled_for -> BigInt,
        expires_at -> Nullable<BigInt>,
        status -> Text,
        created_at -> BigInt,
        sent_at -> Nullable<BigInt>,
        image_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    device_alerts (id) {
        id -> BigInt,
        device_id -> BigInt,
        alert_type -> Text,
        severity -> Text,
        message -> Text,
        image_name -> Nullable<Text>,
        created_at -> BigInt,
        acknowledged_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    device_history (id) {
        id -> BigInt,
        device_id -> BigInt,
        event_type -> Text,
        message -> Text,
        image_name -> Nullable<Text>,
        session_id -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::joinable!(device_images -> devices (device_id));
diesel::joinable!(device_commands -> devices (device_id));
diesel::joinable!(device_alerts -> devices (device_id));
diesel::joinable!(device_history -> devices (device_id));
diesel::joinable!(device_wake_sessions -> devices (device_id));
diesel::allow_tables_to_appear_in_same_query!(
    devices,
    device_images,
    device_commands,
    device_alerts,
    device_history,
    device_wake_sessions
);
