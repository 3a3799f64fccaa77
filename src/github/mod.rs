//! Everything that talks to GitHub: the Actions runner's files and workflow commands, the
//! Packages API, deployment records, check runs and commit statuses, the REST client they
//! share and the permission errors they report.

pub mod actions;
pub mod checks;
pub mod deployments;
pub mod packages;
pub mod permissions;
pub mod rest;
pub mod statuses;
