//! Backups that prove they restore: PostgreSQL, Redis and the namespace's Kubernetes
//! objects, each dumped, verified by restoring or checking it, listed in a manifest with
//! sizes and sha256, shipped to S3-compatible object storage, and expired by age with
//! monthly copies kept.

pub mod kubernetes;
pub mod manifest;
pub mod notify;
pub mod postgres;
pub mod redis;
pub mod restore;
pub mod retention;
pub mod store;
pub mod take;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::process::Child;

/// A backup tool (`pg_dump`, `redis-cli`, ...) run in the backup's work directory `dir`,
/// where it reads and writes its files.
fn tool<'a>(
    name: &'a str,
    argv: &'a [String],
    dir: &'a Path,
    env: &'a BTreeMap<String, String>,
    timeout: Duration,
) -> Child<'a> {
    Child {
        name,
        argv,
        workdir: ".",
        checkout: dir,
        env,
        timeout,
    }
}
