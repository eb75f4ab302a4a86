//! Tools that talk to a running server as a client would, through the generated Rust client.

pub mod bench;
pub mod simulate;
pub mod worker;
