//! Everything that talks to GitHub: the Actions runner's files and workflow commands
//! (and, in later versions, check runs and deployment records through the REST API).

pub mod actions;
pub mod packages;
