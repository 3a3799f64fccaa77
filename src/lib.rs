//! jisu-deploy: a repository's delivery pipeline as one binary.
//!
//! The library holds everything; `main.rs` only parses flags and maps errors to exit codes.
//! Decisions are pure functions beside the I/O that needs them: the pipeline file and run
//! context are validated once ([`config`]), turned into a [`plan::Plan`], and the plan is
//! printed ([`plan::render`]) or carried out by the one executor ([`execute`]). Every
//! command ([`commands`]) opens one [`session::Session`] and is a view of the plan and the
//! executor.

pub mod backup;
pub mod cleanup;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod execute;
pub mod findings;
pub mod github;
pub mod images;
pub mod kube;
pub mod oci;
pub mod output;
pub mod plan;
pub mod process;
pub mod report;
pub mod session;
pub mod tls;
