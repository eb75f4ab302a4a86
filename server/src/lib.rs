//! retryd: a durable retry service. The binary (`main.rs`) is a thin shell over this library, so
//! the integration tests can reach the same store and services the server uses.

pub mod app;
pub mod blobs;
pub mod config;
pub mod core;
pub mod delivery;
pub mod events;
pub mod grpc;
pub mod mqtt;
pub mod scheduler;
pub mod service;
pub mod store;
pub mod tools;
