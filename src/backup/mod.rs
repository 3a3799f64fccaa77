//! Backups kept in S3-compatible object storage: the storage layer that ships backup files
//! and verifies what the server holds ([`store`]), and the pure decision of which backups
//! to keep ([`retention`]).

pub mod retention;
pub mod store;
