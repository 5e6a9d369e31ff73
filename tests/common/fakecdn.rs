//! Fake CDNs for the prober's tests: real HTTP and HTTPS servers on 127.0.0.1 (axum router
//! served by hyper's HTTP/1 connection builder, rustls for TLS), a black hole that accepts and
//! never answers, and a port with nothing listening. Certificates come from a throwaway CA
//! made with rcgen ([`TestCa`]). A running server can hang ([`FakeCdn::hang`], like an edge
//! process under `kill -STOP`: connections stay open and new ones are accepted, nothing is
//! answered) and resume, or change its response delay ([`FakeCdn::set_delay`]).
//!
//! Every server remembers what it saw (request count, Host header, SNI, request headers) so a
//! test can prove what the prober sent. Stopping a server ([`FakeCdn::kill`] or drop) closes the
//! listening socket *and* every open connection, keep-alive ones included, synchronously: a
//! connect or a read on an old connection right after it fails.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

const DAY: Duration = Duration::from_secs(86_400);

/// The ring crypto provider; never rely on a process-default provider.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// A throwaway certificate authority made with rcgen.
pub struct TestCa {
    cert: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate chain (leaf only) and its private key, ready for a rustls server.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Leaf {
    fn clone(&self) -> Self {
        Leaf {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A unique subject: with a shared one, a client trusting another TestCa would find
        // "the" issuer by name and fail with BadSignature instead of UnknownIssuer.
        params.distinguished_name.push(
            DnType::CommonName,
            format!("steerd test CA {:016x}", rand::random::<u64>()),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "steerd tests");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let now = SystemTime::now();
        params.not_before = (now - DAY).into();
        params.not_after = (now + 3650 * DAY).into();
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert,
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// Write the CA certificate to `dir/ca.pem`; its path.
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.cert_pem()).unwrap();
        path
    }

    /// A root store trusting only this CA.
    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der()).unwrap();
        roots
    }

    /// A rustls client configuration (ring provider) trusting only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(self.root_store())
                .with_no_client_auth(),
        )
    }

    /// A leaf certificate for `names` (DNS names; an IP literal becomes an IP SAN) signed by
    /// this CA. Valid from now-1day to now+`days`; for negative `days` it is already expired:
    /// valid from now+days-30d to now+days.
    pub fn leaf(&self, names: &[&str], days: i64) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = SystemTime::now();
        let span = DAY * days.unsigned_abs() as u32;
        let not_after = if days >= 0 { now + span } else { now - span };
        let not_before = if days >= 0 {
            now - DAY
        } else {
            not_after - 30 * DAY
        };
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

/// A rustls server configuration (ring provider, no client auth, no ALPN) for `leaf`.
pub fn server_config(leaf: Leaf) -> Arc<rustls::ServerConfig> {
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain, leaf.key)
            .expect("leaf certificate and key are usable"),
    )
}

// ---------------------------------------------------------------------------------------------
// Router
// ---------------------------------------------------------------------------------------------

/// How a fake CDN answers.
#[derive(Clone, Default, Debug)]
pub struct CdnOptions {
    /// Body of `/health`, `/canary.txt` and every other path except `/big` (default "ok\n").
    pub body: Option<String>,
    /// Status of every route, `/big` included (default 200).
    pub status: Option<u16>,
    /// Delay before sending response headers (slow server).
    pub delay: Option<Duration>,
    /// Extra response headers on every route (e.g. `X-Cache: HIT`).
    pub cache_headers: Vec<(String, String)>,
}

impl CdnOptions {
    pub fn body(mut self, body: &str) -> Self {
        self.body = Some(body.to_string());
        self
    }
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.cache_headers
            .push((name.to_string(), value.to_string()));
        self
    }
}

/// What a fake CDN saw.
#[derive(Default, Debug)]
pub struct CdnStats {
    /// Requests received (counted on arrival, before any delay).
    pub hits: AtomicU64,
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// TLS handshakes completed.
    pub tls_handshakes: AtomicU64,
    pub last_host: Mutex<Option<String>>,
    pub last_path: Mutex<Option<String>>,
    pub last_method: Mutex<Option<String>>,
    pub last_sni: Mutex<Option<String>>,
    pub last_headers: Mutex<Vec<(String, String)>>,
    /// While set, requests (and TLS handshakes) wait, unanswered.
    pub hung: AtomicBool,
    pub resumed: tokio::sync::Notify,
    /// Replaces `CdnOptions::delay` when set.
    pub delay_now: Mutex<Option<Duration>>,
}

impl CdnStats {
    /// Return once the server is not hung.
    async fn wait_while_hung(&self) {
        loop {
            let resumed = self.resumed.notified();
            tokio::pin!(resumed);
            resumed.as_mut().enable();
            if !self.hung.load(Ordering::SeqCst) {
                return;
            }
            resumed.await;
        }
    }
}

struct RouterCtx {
    opts: CdnOptions,
    stats: Arc<CdnStats>,
}

/// The fake CDN's routes: `/big` (1 MiB of 'x') and everything else (`/health`, `/canary.txt`,
/// ...) answering `opts.body`; every route answers with `opts.status`, `opts.cache_headers`
/// and after `opts.delay`, and records the request in `stats`. HEAD works everywhere.
pub fn cdn_router(opts: CdnOptions, stats: Arc<CdnStats>) -> Router {
    let ctx = Arc::new(RouterCtx { opts, stats });
    Router::new()
        .route("/big", get(big))
        .fallback(body_route)
        .layer(middleware::from_fn_with_state(ctx.clone(), record))
        .with_state(ctx)
}

async fn body_route(State(ctx): State<Arc<RouterCtx>>) -> Response {
    ctx.opts
        .body
        .clone()
        .unwrap_or_else(|| "ok\n".to_string())
        .into_response()
}

async fn big() -> Response {
    vec![b'x'; BIG_LEN].into_response()
}

async fn record(State(ctx): State<Arc<RouterCtx>>, req: Request, next: Next) -> Response {
    let stats = &ctx.stats;
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    *stats.last_host.lock().unwrap() = host;
    *stats.last_headers.lock().unwrap() = headers;
    *stats.last_path.lock().unwrap() = Some(req.uri().path().to_string());
    *stats.last_method.lock().unwrap() = Some(req.method().to_string());
    stats.hits.fetch_add(1, Ordering::SeqCst);

    stats.wait_while_hung().await;
    let delay = stats.delay_now.lock().unwrap().or(ctx.opts.delay);
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let mut resp = next.run(req).await;
    if let Some(s) = ctx.opts.status {
        *resp.status_mut() = StatusCode::from_u16(s).expect("valid status code");
    }
    for (name, value) in &ctx.opts.cache_headers {
        resp.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).expect("valid header name"),
            HeaderValue::from_str(value).expect("valid header value"),
        );
    }
    resp
}

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

/// Duplicates of the sockets of open connections, so that stopping can close them at once.
type ConnRegistry = Arc<Mutex<HashMap<u64, socket2::Socket>>>;

enum Mode {
    Http(Router),
    Https(Router, Arc<rustls::ServerConfig>),
    Blackhole,
}

/// A running fake CDN. Dropping it or calling [`kill`](Self::kill) stops it and closes every
/// open connection (keep-alive connections included): the listening socket and each connection
/// socket are shut down synchronously, then the tasks are aborted.
pub struct FakeCdn {
    addr: SocketAddr,
    stats: Arc<CdnStats>,
    closed: Arc<AtomicBool>,
    listener: Option<socket2::Socket>,
    conns: ConnRegistry,
    task: Option<JoinHandle<()>>,
}

impl FakeCdn {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:port` (no trailing slash).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received (counted on arrival, so a request still waiting out `delay` counts).
    /// Always 0 for a black hole.
    pub fn hits(&self) -> u64 {
        self.stats.hits.load(Ordering::SeqCst)
    }

    /// TCP connections accepted (black holes count too).
    pub fn connections(&self) -> u64 {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed (https only).
    pub fn tls_handshakes(&self) -> u64 {
        self.stats.tls_handshakes.load(Ordering::SeqCst)
    }

    /// Host header of the last request.
    pub fn last_host(&self) -> Option<String> {
        self.stats.last_host.lock().unwrap().clone()
    }

    /// Path of the last request.
    pub fn last_path(&self) -> Option<String> {
        self.stats.last_path.lock().unwrap().clone()
    }

    /// Method of the last request.
    pub fn last_method(&self) -> Option<String> {
        self.stats.last_method.lock().unwrap().clone()
    }

    /// SNI of the last TLS ClientHello (https only). Recorded when the ClientHello arrives, so
    /// it is set even when the client then rejects the certificate.
    pub fn last_sni(&self) -> Option<String> {
        self.stats.last_sni.lock().unwrap().clone()
    }

    /// Request headers of the last request (names lower-case, in arrival order).
    pub fn last_headers(&self) -> Vec<(String, String)> {
        self.stats.last_headers.lock().unwrap().clone()
    }

    /// Value of request header `name` (case-insensitive) in the last request.
    pub fn last_header(&self, name: &str) -> Option<String> {
        self.last_headers()
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.conns.lock().unwrap().len()
    }

    /// Hang like a stopped process: open connections stay open, new ones are accepted, and
    /// nothing is answered until [`resume`](Self::resume) (requests still count as hits).
    pub fn hang(&self) {
        self.stats.hung.store(true, Ordering::SeqCst);
    }

    /// Answer again, the requests that waited included.
    pub fn resume(&self) {
        self.stats.hung.store(false, Ordering::SeqCst);
        self.stats.resumed.notify_waiters();
    }

    /// Delay every response from now on by `d` (instead of the options' delay).
    pub fn set_delay(&self, d: Duration) {
        *self.stats.delay_now.lock().unwrap() = Some(d);
    }

    /// Stop: close the listener and every open connection, and wait for the server task to end.
    pub async fn kill(mut self) {
        self.stop();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn stop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(l) = self.listener.take() {
            // On Linux, shutting down a listening socket takes it out of LISTEN state at once
            // (new connects are refused, queued ones reset, a pending accept fails).
            let _ = l.shutdown(Shutdown::Both);
        }
        let open = std::mem::take(&mut *self.conns.lock().unwrap());
        for sock in open.values() {
            let _ = sock.shutdown(Shutdown::Both);
        }
        drop(open);
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Drop for FakeCdn {
    fn drop(&mut self) {
        self.stop();
    }
}

fn bind_socket(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

async fn start(addr: SocketAddr, mode: Mode, stats: Arc<CdnStats>) -> std::io::Result<FakeCdn> {
    let listener = bind_socket(addr)?;
    let addr = listener.local_addr()?;
    let dup = socket2::SockRef::from(&listener).try_clone()?;
    let conns: ConnRegistry = Arc::default();
    let closed = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(accept_loop(
        listener,
        Arc::new(mode),
        stats.clone(),
        conns.clone(),
        closed.clone(),
    ));
    Ok(FakeCdn {
        addr,
        stats,
        closed,
        listener: Some(dup),
        conns,
        task: Some(task),
    })
}

/// Removes a connection from the registry when its task ends (or is aborted).
struct ConnGuard {
    id: u64,
    conns: ConnRegistry,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.conns.lock().unwrap().remove(&self.id);
    }
}

async fn accept_loop(
    listener: TcpListener,
    mode: Arc<Mode>,
    stats: Arc<CdnStats>,
    conns: ConnRegistry,
    closed: Arc<AtomicBool>,
) {
    // Dropped with this task: aborts every connection task.
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        while tasks.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) if closed.load(Ordering::SeqCst) => return,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        if closed.load(Ordering::SeqCst) {
            return;
        }
        stats.connections.fetch_add(1, Ordering::SeqCst);
        let Ok(dup) = socket2::SockRef::from(&stream).try_clone() else {
            continue;
        };
        next_id += 1;
        conns.lock().unwrap().insert(next_id, dup);
        let guard = ConnGuard {
            id: next_id,
            conns: conns.clone(),
        };
        let mode = mode.clone();
        let stats = stats.clone();
        tasks.spawn(async move {
            let _guard = guard;
            serve_conn(stream, &mode, &stats).await;
        });
    }
}

async fn serve_conn(stream: TcpStream, mode: &Mode, stats: &CdnStats) {
    match mode {
        Mode::Http(router) => serve_http(stream, router.clone()).await,
        Mode::Https(router, config) => {
            stats.wait_while_hung().await;
            let acceptor =
                tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
            let Ok(start) = acceptor.await else { return };
            let sni = start.client_hello().server_name().map(str::to_string);
            *stats.last_sni.lock().unwrap() = sni;
            let Ok(tls) = start.into_stream(config.clone()).await else {
                return;
            };
            stats.tls_handshakes.fetch_add(1, Ordering::SeqCst);
            serve_http(tls, router.clone()).await
        }
        Mode::Blackhole => {
            // Hold the connection open, never read, never answer.
            let _stream = stream;
            std::future::pending::<()>().await
        }
    }
}

async fn serve_http<IO>(io: IO, router: Router)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(router))
        .await;
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Plain HTTP on 127.0.0.1 (kernel-chosen port) serving [`cdn_router`].
pub async fn http_cdn(opts: CdnOptions) -> FakeCdn {
    http_cdn_on(loopback(), opts).await
}

/// Plain HTTP on `addr` (SO_REUSEADDR), e.g. the address of a killed [`FakeCdn`] to bring a
/// target back.
pub async fn http_cdn_on(addr: SocketAddr, opts: CdnOptions) -> FakeCdn {
    let stats = Arc::<CdnStats>::default();
    let router = cdn_router(opts, stats.clone());
    start(addr, Mode::Http(router), stats)
        .await
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"))
}

/// HTTPS (rustls, HTTP/1.1) on 127.0.0.1 (kernel-chosen port) presenting `leaf`.
pub async fn https_cdn(opts: CdnOptions, leaf: Leaf) -> FakeCdn {
    https_cdn_on(loopback(), opts, leaf).await
}

/// HTTPS on `addr`.
pub async fn https_cdn_on(addr: SocketAddr, opts: CdnOptions, leaf: Leaf) -> FakeCdn {
    let stats = Arc::<CdnStats>::default();
    let router = cdn_router(opts, stats.clone());
    start(addr, Mode::Https(router, server_config(leaf)), stats)
        .await
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"))
}

/// Accepts TCP connections and never reads or answers (connect succeeds, then the client times
/// out). [`FakeCdn::connections`] counts the connections; `hits` stays 0.
pub async fn blackhole() -> FakeCdn {
    start(loopback(), Mode::Blackhole, Arc::default())
        .await
        .expect("bind black hole")
}

/// A port on 127.0.0.1 with nothing listening (bound, noted, closed).
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Length of the body served at `/big` (1 MiB of 'x').
pub const BIG_LEN: usize = 1 << 20;
