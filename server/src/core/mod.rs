//! The domain: types, rules and state machines of retryd's services.
//!
//! Nothing here knows about gRPC, SQL or MQTT; adapters (`grpc`, `store`, …) convert to and from
//! these types, so a rule is written once and holds for every way in.

pub mod auth;
pub mod broker;
pub mod chunks;
pub mod clock;
pub mod device_messages;
pub mod devices;
pub mod error;
pub mod limits;
pub mod retry;
pub mod sync;
pub mod tasks;
pub mod time;
pub mod uploads;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result};
pub use time::Timestamp;
