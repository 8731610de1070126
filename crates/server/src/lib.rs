//! The `aimc` binary's building blocks, shared with the end-to-end tests.

pub mod configuration;
pub mod http;
pub mod startup;
pub mod telemetry;
