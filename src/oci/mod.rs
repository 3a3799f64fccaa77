//! The OCI distribution protocol, and nothing about pipelines: image references, digests,
//! authentication (basic and bearer token exchange), manifests, blobs, tag listing, and
//! manifest-preserving retag and cross-repository copy, with every request counted.

pub mod auth;
pub mod blobs;
pub mod body;
pub mod catalog;
pub mod client;
pub mod counter;
pub mod digest;
pub mod error;
pub mod manifest;
pub mod reference;
pub mod retag;
pub mod server_text;

pub use auth::{Credentials, Secret};
pub use client::{ClientOptions, RegistryClient};
pub use counter::{RequestCounter, RequestCounts, RequestKind};
pub use digest::Digest;
pub use error::RegistryError;
pub use reference::{Reference, ReferenceError};
pub use retag::{RetagOptions, RetagOutcome, retag};
