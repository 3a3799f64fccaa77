//! The `jisu-deploy` binary: parse, set up logging, run, map errors to exit codes.
fn main() {}
