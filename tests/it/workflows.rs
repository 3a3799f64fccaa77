//! The reusable workflows (`.github/workflows/`), the caller templates (`workflows/`) and
//! the action files: run under act, linted by actionlint, held to the workflow policy.

mod act;
mod lint;
mod policy;
mod setup;
