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
