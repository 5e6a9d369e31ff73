//! TLS level: rustls client configurations (Mozilla roots plus an optional CA file), the
//! handshake's facts and certificate expiry.

use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::local::LocalError;
use super::run::Outcome;

/// Client configurations, one per CA file (None = the Mozilla roots only).
#[derive(Default)]
pub struct TlsConfigs {
    configs: Mutex<FxHashMap<Option<PathBuf>, TlsConnector>>,
}

impl TlsConfigs {
    /// The connector for `ca_file`; on error, why, and whether that is a local error (the CA
    /// file could not be opened for lack of descriptors).
    pub fn connector(
        &self,
        ca_file: Option<&Path>,
    ) -> Result<TlsConnector, (String, Option<LocalError>)> {
        let key = ca_file.map(Path::to_path_buf);
        let mut map = self.configs.lock();
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let connector = TlsConnector::from(Arc::new(client_config(ca_file)?));
        map.insert(key, connector.clone());
        Ok(connector)
    }
}

/// A rustls client configuration trusting the Mozilla roots and the certificates of `ca_file`;
/// on error, why, and whether that is a local error.
fn client_config(
    ca_file: Option<&Path>,
) -> Result<rustls::ClientConfig, (String, Option<LocalError>)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            (
                format!("cannot read {}: {e}", path.display()),
                LocalError::of_io(&e),
            )
        })?;
        for c in CertificateDer::pem_slice_iter(&pem) {
            let c = c.map_err(|e| (format!("{}: bad PEM: {e}", path.display()), None))?;
            roots.add(c).map_err(|e| {
                (
                    format!("{}: unusable CA certificate: {e}", path.display()),
                    None,
                )
            })?;
        }
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| (format!("TLS setup: {e}"), None))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// After a successful handshake: protocol, subject of the leaf and days to its expiry; a warning
/// when fewer than `warn_days` remain.
pub fn describe<IO>(tls: &TlsStream<IO>, warn_days: u32) -> (Outcome, String) {
    let (_, conn) = tls.get_ref();
    let proto = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2",
        _ => "TLS",
    };
    let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) else {
        return (Outcome::Ok, format!("{proto}; no certificate seen"));
    };
    match expiry(leaf, crate::clock::wall_ms() / 1000) {
        Some((days, date)) => {
            let detail = format!("{proto}; certificate valid, expires in {days} d ({date})");
            if days < i64::from(warn_days) {
                (
                    Outcome::Warn,
                    format!("{detail}: fewer than {warn_days} {EXPIRY_WARNING}"),
                )
            } else {
                (Outcome::Ok, detail)
            }
        }
        None => (Outcome::Ok, format!("{proto}; certificate valid")),
    }
}

/// What the TLS level's detail says when the certificate is close to expiry.
pub const EXPIRY_WARNING: &str = "days left";

/// Whole days from `now_s` to the certificate's notAfter, and that date (YYYY-MM-DD).
pub fn expiry(cert: &CertificateDer<'_>, now_s: u64) -> Option<(i64, String)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let not_after = parsed.validity().not_after;
    let secs = not_after.timestamp();
    let days = (secs - now_s as i64).div_euclid(86_400);
    let dt = not_after.to_datetime();
    let date = format!(
        "{:04}-{:02}-{:02}",
        dt.year(),
        u8::from(dt.month()),
        dt.day()
    );
    Some((days, date))
}

/// The reason a handshake failed, in the verifier's words.
pub fn error_reason(e: &std::io::Error) -> String {
    if let Some(inner) = e.get_ref()
        && let Some(r) = inner.downcast_ref::<rustls::Error>()
    {
        return match r {
            rustls::Error::InvalidCertificate(c) => format!("invalid certificate: {c}"),
            other => other.to_string(),
        };
    }
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "connection closed during the handshake".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset during the handshake".into(),
        _ => e.to_string(),
    }
}
