//! Services the integration tests start for themselves.

pub mod registry_server;
