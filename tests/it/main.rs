//! Integration tests: one binary, a module per area, shared support beside them.

mod action_metadata;
mod actions_io;
mod alertmanager;
mod backup;
mod backup_store;
mod bad_input;
mod bluegreen;
mod checks;
mod deploy;
mod findings;
mod github_resilience;
mod hardening;
mod images;
mod kubeconfig;
mod lock;
mod network_policies;
mod plan_snapshots;
mod registry;
mod rollback;
mod run;
mod secrets;
mod statuses;
mod summary;
mod support;
mod workflows;
