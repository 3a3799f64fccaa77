//! The pipeline's images, built on the OCI client ([`crate::oci`]): tag rules, builds,
//! promotion by environment tag, retention (prune) and the registry credentials a run uses.
//! Rules are pure; the runners sit beside them.

pub mod build;
pub mod build_command;
pub mod build_order;
pub mod commit_history;
pub mod credentials;
pub mod promote;
pub mod prune;
pub mod prune_command;
pub mod tags;
