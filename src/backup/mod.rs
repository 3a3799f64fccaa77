//! Backups that prove they restore: PostgreSQL, Redis and the namespace's Kubernetes
//! objects, each dumped, verified by restoring or checking it, listed in a manifest with
//! sizes and sha256, shipped to object storage, and expired by age.

pub mod manifest;
pub mod postgres;
pub mod redis;
