//! Everything that talks to GitHub: the Actions runner's files and workflow commands, the
//! Packages API, deployment records and check runs.

pub mod actions;
pub mod checks;
pub mod deployments;
pub mod packages;
pub mod rest;
