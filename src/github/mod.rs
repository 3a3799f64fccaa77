//! Everything that talks to GitHub: the Actions runner's files and workflow commands, the
//! Packages API and deployment records (check runs come later).

pub mod actions;
pub mod deployments;
pub mod packages;
