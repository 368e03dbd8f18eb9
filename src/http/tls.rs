//! Optional TLS for the HTTP API (`[http] tls_cert`/`tls_key`, rustls), and the warning when the
//! API listens beyond loopback without it.
//!
//! Contract: the listener hands axum only connections whose TLS handshake finished within
//! `HANDSHAKE_TIMEOUT`; a failed or slow handshake is counted and dropped, never fatal.

use super::HttpConfig;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Longest a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The warning to log (and `validate` to print) when the API is reachable from the network in
/// clear text.
pub fn exposure_warning(h: &HttpConfig) -> Option<String> {
    if !h.enabled || h.listen.ip().is_loopback() || h.tls_cert.is_some() {
        return None;
    }
    Some(format!(
        "http.listen {} is beyond loopback without TLS: the bearer token and line data cross the network in clear text; set http.tls_cert and http.tls_key, or listen on loopback behind a TLS proxy",
        h.listen
    ))
}

/// rustls server settings from a PEM chain and key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("http.tls_cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("http.tls_cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("http.tls_cert {}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("http.tls_key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("http.tls_cert/tls_key: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_beyond_loopback_without_tls_only() {
        let mut h = HttpConfig::default();
        assert_eq!(exposure_warning(&h), None);
        h.listen = "0.0.0.0:8080".parse().unwrap();
        let w = exposure_warning(&h).unwrap();
        assert!(
            w.contains("0.0.0.0:8080") && w.contains("without TLS"),
            "{w}"
        );
        h.tls_cert = Some("/c.pem".into());
        h.tls_key = Some("/k.pem".into());
        assert_eq!(exposure_warning(&h), None);
        h.tls_cert = None;
        h.listen = "[::1]:8080".parse().unwrap();
        assert_eq!(exposure_warning(&h), None);
    }

    #[test]
    fn missing_cert_is_named() {
        let e = server_config(
            Path::new("/nonexistent/c.pem"),
            Path::new("/nonexistent/k.pem"),
        )
        .unwrap_err();
        assert!(e.contains("/nonexistent/c.pem"), "{e}");
    }
}
