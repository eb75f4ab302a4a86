//! End-to-end tests: the real `retryd` binary on a free port, over a fresh Postgres database or
//! SQLite file, driven through the generated Rust client (and grpcurl, and raw HTTP for
//! gRPC-Web).

/// Runs each listed case of the calling module on both engines.
macro_rules! on_both_engines {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(crate::support::Engine::Postgres).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(crate::support::Engine::Sqlite).await;
                }
            )*
        }
    };
}

#[path = "../support/mod.rs"]
mod support;

mod auth;
mod bad_input;
mod batches;
mod bench;
mod client_worker;
mod device_fleet;
mod device_images;
mod device_mqtt;
mod protocol;
mod sync_bad_input;
mod sync_retry;
mod uploads;
mod wakeups;
mod workers;
