//! Integration tests: one binary, one module per area, shared support beside them.

mod registry;
mod support;
