//! Kubernetes: render manifests for an environment, server-side apply them, watch the
//! rollouts, run the environment's checks. The executor's deploy steps
//! ([`crate::execute::deploy`]) put these together.
//!
//! Pure decisions (`render`, `rollout`, `diff`, `lock::decide`) sit beside the I/O that uses
//! them (`apply`, `watch`, `checks`, `client`, `lock`).

pub mod apply;
pub mod checks;
pub mod client;
pub mod color;
pub mod deployed;
pub mod diff;
pub mod ingress;
pub mod lock;
pub mod render;
pub mod retry;
pub mod rollout;
pub mod status;
pub mod traffic;
pub mod undo;
pub mod watch;
