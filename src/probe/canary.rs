//! One canary object fetched through one CDN (its address, with the canary's own Host header
//! and TLS name, as a client would reach it) or from the origin: the status, the cache status
//! as the cache level reads it, the object's version and the response headers. Used to verify
//! purges and to compare versions across CDNs (`freshness`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::cache::read_cache_headers;
use super::tls::TlsConfigs;
use crate::config::purge::{CanaryUrl, VersionSource};
use crate::health::CacheStatus;

const USER_AGENT: &str = concat!("steerd-canary/", env!("CARGO_PKG_VERSION"));
/// Body bytes read (and dropped) at most: a canary's headers are what counts.
const BODY_LIMIT: usize = 1 << 20;

/// Where to connect: an address, or a host name resolved by the system resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Addr(SocketAddr),
    Host(String, u16),
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Via::Addr(a) => write!(f, "{a}"),
            Via::Host(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

/// What one fetch found.
#[derive(Debug, Clone)]
pub struct CanaryFetch {
    pub status: u16,
    /// HIT, MISS, STALE or other, when a header said (see [`super::cache`]).
    pub cache: Option<CacheStatus>,
    /// The cache level's one-line reading of the headers.
    pub cache_detail: String,
    /// The version header's value (None: the response had none).
    pub version: Option<String>,
    pub headers: http::HeaderMap,
}

/// Fetch `url` (GET) at `via` within `timeout`, reading its version from `source`. A TLS URL is
/// verified against the Mozilla roots and `ca_file`.
pub async fn fetch(
    tls: &TlsConfigs,
    via: &Via,
    url: &CanaryUrl,
    source: &VersionSource,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<CanaryFetch, String> {
    match tokio::time::timeout(timeout, fetch_inner(tls, via, url, source, ca_file)).await {
        Ok(r) => r.map_err(|e| format!("{via}: {e}")),
        Err(_) => Err(format!(
            "{via}: no answer within {:.1} s",
            timeout.as_secs_f64()
        )),
    }
}

async fn fetch_inner(
    tls: &TlsConfigs,
    via: &Via,
    url: &CanaryUrl,
    source: &VersionSource,
    ca_file: Option<&Path>,
) -> Result<CanaryFetch, String> {
    let tcp = match via {
        Via::Addr(a) => TcpStream::connect(a).await,
        Via::Host(h, p) => TcpStream::connect((h.as_str(), *p)).await,
    }
    .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn super::http::Conn> = if url.https {
        let connector = tls.connector(ca_file).map_err(|(d, _)| d)?;
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| format!("TLS name {}: {e}", url.host))?;
        let s = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {}", super::tls::error_reason(&e)))?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/1.1 setup: {}", super::http::hyper_reason(&e)))?;
    let driver = tokio::spawn(conn);
    let req = http::Request::builder()
        .method(http::Method::GET)
        .uri(&url.path)
        .header(http::header::HOST, &url.host_header)
        .header(http::header::USER_AGENT, USER_AGENT)
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("no response: {}", super::http::hyper_reason(&e)));
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            driver.abort();
            return Err(e);
        }
    };
    let status = resp.status().as_u16();
    let (parts, mut body) = resp.into_parts();
    let mut read = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(d) = frame.into_data() {
            read += d.len();
            if read > BODY_LIMIT {
                break;
            }
        }
    }
    driver.abort();
    let (obs, cache_detail) = read_cache_headers(&parts.headers);
    let version = parts
        .headers
        .get(source.header())
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    Ok(CanaryFetch {
        status,
        cache: obs.map(|o| o.status),
        cache_detail,
        version,
        headers: parts.headers,
    })
}
