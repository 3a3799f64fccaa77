//! Integration tests: one binary, a module per area.

mod actions_io;
mod bad_input;
mod plan_snapshots;
mod support;
