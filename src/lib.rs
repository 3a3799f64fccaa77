//! jisu-deploy: a repository's delivery pipeline as one binary.
//!
//! The library holds everything; `main.rs` only parses flags and maps errors to exit codes.
//! Decisions are pure functions beside the I/O that needs them: the pipeline file and run
//! context are validated once ([`config`]), turned into a [`plan::Plan`], and the plan is
//! printed ([`plan::render`]) or, in later versions, executed.

pub mod cli;
pub mod config;
pub mod error;
pub mod github;
pub mod images;
pub mod kube;
pub mod oci;
pub mod plan;
pub mod report;
pub mod run;
pub mod tls;
