//! Container images and registries: tag rules, image references, authentication,
//! manifest-preserving retag and cross-repository copy, with request counting.

pub mod auth;
pub mod blobs;
pub mod client;
pub mod command;
pub mod counter;
pub mod digest;
pub mod error;
pub mod manifest;
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
