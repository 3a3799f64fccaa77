//! jisu-deploy: a repository's delivery pipeline as one binary.

pub mod registry;
