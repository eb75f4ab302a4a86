//! SyncRetry refuses bad input over the wire with the precise status, naming the field, and
//! the refused calls change nothing.

use retryd_client::tonic::Code;
use retryd_client::v1::sync_retry_client::SyncRetryClient;
use retryd_client::v1::*;

use crate::support::server::ServerProcess;
use crate::support::TestDb;

fn source(data_type: &str) -> RegisterSourceRequest {
    RegisterSourceRequest {
        data_type: data_type.into(),
        sync_interval_seconds: 60,
        ..Default::default()
    }
}

fn change(change_id: &str, record_id: &str) -> RecordChange {
    RecordChange {
        change_id: change_id.into(),
        record_id: record_id.into(),
        updated_at: Some(prost_types::Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        }),
        payload: b"{}".to_vec(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_sync_input_is_refused_by_field_and_changes_nothing() {
    let db = TestDb::sqlite();
    let server = ServerProcess::start(&db.url, &[]);
    let mut client = SyncRetryClient::new(server.channel().await);

    let bad_sources = [
        (source(""), Code::InvalidArgument, "data_type"),
        (source("has space"), Code::InvalidArgument, "data_type"),
        (
            RegisterSourceRequest {
                sync_interval_seconds: u32::MAX,
                ..source("orders")
            },
            Code::InvalidArgument,
            "sync_interval_seconds",
        ),
        (
            RegisterSourceRequest {
                retry_policy: Some(SyncRetryPolicy {
                    base_delay_ms: 10_000,
                    max_delay_ms: 5_000,
                    ..Default::default()
                }),
                ..source("orders")
            },
            Code::InvalidArgument,
            "retry_policy.max_delay_ms",
        ),
        (
            RegisterSourceRequest {
                config: "x".repeat(2 * 1024 * 1024),
                ..source("orders")
            },
            Code::ResourceExhausted,
            "config",
        ),
    ];
    for (request, code, field) in bad_sources {
        let refused = client.register_source(request).await.unwrap_err();
        assert_eq!(refused.code(), code, "{field}: {}", refused.message());
        assert!(refused.message().contains(field), "{}", refused.message());
    }
    let sources = client
        .list_sources(ListSourcesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(sources.sources.is_empty(), "nothing was registered");

    let push = |changes: Vec<RecordChange>| PushChangesRequest {
        collection: "notes".into(),
        client_id: "phone".into(),
        changes,
        strategy: ConflictStrategy::NewestWins.into(),
    };
    let mut no_time = change("c2", "r2");
    no_time.updated_at = None;
    let refused = client
        .push_changes(push(vec![change("c1", "r1"), no_time]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("changes[1].updated_at"),
        "{}",
        refused.message()
    );
    let refused = client
        .push_changes(push(vec![change("", "r1")]))
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("changes[0].change_id"),
        "{}",
        refused.message()
    );
    let too_many = (0..1001).map(|i| change(&format!("c{i}"), "r")).collect();
    let refused = client.push_changes(push(too_many)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let pulled = client
        .pull_changes(PullChangesRequest {
            collection: "notes".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        pulled.records.is_empty(),
        "the refused pushes applied nothing"
    );

    let unknown = client
        .rollback_to(RollbackToRequest {
            data_type: "orders".into(),
            version: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{}", unknown.message());
    let stale = client
        .fail_sync(FailSyncRequest {
            task_id: 1,
            lease_token: "not-a-lease".into(),
            error_message: "boom".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        stale.code(),
        Code::NotFound,
        "no such task: {}",
        stale.message()
    );
    let empty_error = client
        .fail_sync(FailSyncRequest {
            task_id: 1,
            lease_token: "t".into(),
            error_message: " ".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(empty_error.code(), Code::InvalidArgument);
    assert!(empty_error.message().contains("error_message"));
}
