//! Use cases: what each RPC does, over the store, the clock and the wake-ups, in domain types.
//! The gRPC layer (and later the scheduler and MQTT adapter) call these; none of them talks to
//! the store directly.

pub mod auth;
pub mod chunk_queue;
pub mod device_inbox;
pub mod devices;
pub mod health;
pub mod paging;
pub mod sync_retry;
pub mod uploads;
