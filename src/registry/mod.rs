//! Container images and registries: tag rules, image references, authentication,
//! manifest-preserving retag and cross-repository copy, with request counting; image builds,
//! promotion by environment tag, and retention (prune).

pub mod auth;
pub mod blobs;
pub mod build;
pub mod build_command;
pub mod catalog;
pub mod client;
pub mod command;
pub mod counter;
pub mod digest;
pub mod error;
pub mod manifest;
pub mod packages;
pub mod promote;
pub mod prune;
pub mod prune_command;
pub mod reference;
pub mod retag;
pub mod tags;

pub use auth::{Credentials, Secret};
pub use client::{ClientOptions, RegistryClient};
pub use command::{RetagArgs, run_retag};
pub use counter::{RequestCounter, RequestCounts, RequestKind};
pub use digest::Digest;
pub use error::RegistryError;
pub use reference::{Reference, ReferenceError};
pub use retag::{RetagOptions, RetagOutcome, retag};
