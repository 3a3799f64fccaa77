//! A simulated Kubernetes API server for tests: the real wire format over HTTP, with
//! emulated controllers, so that the `kube` crate and kubectl can drive it.

pub mod clock;
pub mod fieldset;
pub mod managed;
pub mod objects;
pub mod patch;
pub mod resources;
pub mod schema;
pub mod selectors;
pub mod status;
pub mod store;
pub mod writes;
