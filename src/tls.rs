//! TLS for every HTTP client: rustls with the ring provider, the only one compiled in
//! (see Cargo.toml), installed for the process before the first client is built.

/// Installs ring as the process's rustls provider; later calls do nothing.
pub fn ensure_provider() {
    // An error only says a provider is installed already, which is the goal.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
