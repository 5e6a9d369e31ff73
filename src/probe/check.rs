//! One check run: the levels of a [`CheckSpec`] in dependency order over one connection
//! (dns → tcp → tls → http → content, cache). Each level has its own result and latency; once a
//! level fails, the ones above it are reported as not reached.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::cache::read_cache_headers;
use super::tls::TlsConfigs;
use crate::config::check::{CheckSpec, Connect, ContentMatch, HttpSpec};
use crate::health::{CacheObservation, Level, Observation};

const USER_AGENT: &str = concat!("steerd-probe/", env!("CARGO_PKG_VERSION"));
/// Body bytes the http level reads when no content check sets a limit.
const DEFAULT_BODY_LIMIT: u64 = 1 << 20;

/// The result of one level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Passed, with something the operator should know (a certificate close to expiry).
    Warn,
    Fail,
    /// A level below failed, so this one did not run.
    NotReached,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
            Outcome::NotReached => "not reached",
        }
    }
    pub fn passed(self) -> bool {
        matches!(self, Outcome::Ok | Outcome::Warn)
    }
}

#[derive(Debug, Clone)]
pub struct LevelResult {
    pub level: Level,
    pub outcome: Outcome,
    pub latency: Duration,
    pub detail: String,
    pub cache: Option<CacheObservation>,
}

/// Everything one run found.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub target: Arc<str>,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_ms: u64,
    /// The same start on the monotonic clock (health time is derived from it).
    pub started: Instant,
    pub total: Duration,
    pub levels: Vec<LevelResult>,
}

impl RunResult {
    /// Every level that ran passed.
    pub fn ok(&self) -> bool {
        self.levels.iter().all(|l| l.outcome != Outcome::Fail)
    }

    /// The level that failed, if any.
    pub fn failure(&self) -> Option<&LevelResult> {
        self.levels.iter().find(|l| l.outcome == Outcome::Fail)
    }

    /// One-line summary: "ok" or "tcp: connection refused".
    pub fn summary(&self) -> String {
        match self.failure() {
            Some(f) => format!("{}: {}", f.level, f.detail),
            None => "ok".into(),
        }
    }

    /// Observations for the health windows: one per level that ran, plus the run's verdict
    /// (level `check`, latency = the whole run). Levels not reached are not observations.
    pub fn observations(&self, vantage: &Arc<str>) -> Vec<Observation> {
        let mut out: Vec<Observation> = self
            .levels
            .iter()
            .filter(|l| l.outcome != Outcome::NotReached)
            .map(|l| Observation {
                target: self.target.clone(),
                level: l.level,
                vantage: vantage.clone(),
                at_ms: self.started_ms,
                ok: l.outcome.passed(),
                latency: l.latency,
                detail: l.detail.clone(),
                cache: l.cache.clone(),
            })
            .collect();
        out.push(Observation {
            target: self.target.clone(),
            level: Level::Check,
            vantage: vantage.clone(),
            at_ms: self.started_ms,
            ok: self.ok(),
            latency: self.total,
            detail: self.summary(),
            cache: self.levels.iter().find_map(|l| l.cache.clone()),
        });
        out
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

type Resolver = hickory_resolver::TokioResolver;

/// What checks share: resolvers per resolver list, TLS configurations per CA file.
#[derive(Default)]
pub struct Checker {
    resolvers: Mutex<FxHashMap<Vec<SocketAddr>, Resolver>>,
    tls: TlsConfigs,
}

fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1000.0;
    if m < 10.0 {
        format!("{m:.1} ms")
    } else {
        format!("{m:.0} ms")
    }
}

/// Run `fut` until `deadline`; Err(detail) on timeout.
async fn until<T>(
    deadline: tokio::time::Instant,
    budget: Duration,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, String> {
    tokio::time::timeout_at(deadline, fut)
        .await
        .map_err(|_| format!("timed out (check timeout {:.1} s)", budget.as_secs_f64()))
}

/// Where the check is: results so far and the levels still to run.
struct Run<'a> {
    spec: &'a CheckSpec,
    levels: Vec<LevelResult>,
}

impl Run<'_> {
    fn push(&mut self, level: Level, outcome: Outcome, latency: Duration, detail: String) {
        self.levels.push(LevelResult {
            level,
            outcome,
            latency,
            detail,
            cache: None,
        });
    }
    /// Record a failure of `level` and mark every later level not reached.
    fn fail(&mut self, level: Level, latency: Duration, detail: String) {
        self.push(level, Outcome::Fail, latency, detail);
        for l in self.spec.levels.iter().filter(|l| **l > level) {
            self.levels.push(LevelResult {
                level: *l,
                outcome: Outcome::NotReached,
                latency: Duration::ZERO,
                detail: format!("{level} failed"),
                cache: None,
            });
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

impl Checker {
    pub fn new() -> Self {
        Self::default()
    }

    fn resolver(&self, servers: &[SocketAddr], timeout: Duration) -> Result<Resolver, String> {
        let mut map = self.resolvers.lock().expect("resolver map");
        if let Some(r) = map.get(servers) {
            return Ok(r.clone());
        }
        use hickory_resolver::config::{
            ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig,
        };
        use hickory_resolver::net::runtime::TokioRuntimeProvider;
        let mut builder = if servers.is_empty() {
            hickory_resolver::Resolver::builder_tokio()
                .map_err(|e| format!("cannot read the system resolver configuration: {e}"))?
        } else {
            let ns = servers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect();
            hickory_resolver::Resolver::builder_with_config(
                ResolverConfig::from_name_servers(ns),
                TokioRuntimeProvider::default(),
            )
        };
        let o = builder.options_mut();
        // Every check asks afresh: a cached answer would hide a CDN whose DNS just broke.
        o.cache_size = 0;
        o.use_hosts_file = ResolveHosts::Never;
        o.attempts = 1;
        o.timeout = timeout;
        o.ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4AndIpv6;
        let r = builder
            .build()
            .map_err(|e| format!("cannot build the resolver: {e}"))?;
        map.insert(servers.to_vec(), r.clone());
        Ok(r)
    }

    /// Run every level of `spec` against `target` within the spec's timeout.
    pub async fn run(&self, target: &Arc<str>, spec: &CheckSpec) -> RunResult {
        self.run_watch(target, spec).await.0
    }

    /// Like [`Checker::run`], and when every level passed, the connection kept open as a
    /// [`Watch`] that reports the target closing or resetting it.
    pub async fn run_watch(
        &self,
        target: &Arc<str>,
        spec: &CheckSpec,
    ) -> (RunResult, Option<Watch>) {
        let started_ms = now_ms();
        let t0 = Instant::now();
        let budget = spec.timing.timeout;
        let deadline = tokio::time::Instant::now() + budget;
        let mut run = Run {
            spec,
            levels: Vec::with_capacity(spec.levels.len()),
        };
        let watch = self.run_levels(&mut run, deadline, budget).await;
        let result = RunResult {
            target: target.clone(),
            started_ms,
            started: t0,
            total: t0.elapsed(),
            levels: run.levels,
        };
        let watch = watch.filter(|_| result.ok());
        (result, watch)
    }

    async fn run_levels(
        &self,
        run: &mut Run<'_>,
        deadline: tokio::time::Instant,
        budget: Duration,
    ) -> Option<Watch> {
        let spec = run.spec;
        // dns
        let mut resolved: Vec<IpAddr> = Vec::new();
        if spec.has(Level::Dns) {
            let host = spec
                .dns_host
                .clone()
                .expect("validated: dns level has a host");
            let t = Instant::now();
            let outcome = match self.resolver(&spec.resolvers, budget) {
                Err(e) => Err(e),
                Ok(r) => match until(deadline, budget, r.lookup_ip(host.clone())).await {
                    Err(e) => Err(e),
                    Ok(Err(e)) if e.is_nx_domain() => Err(format!("{host}: NXDOMAIN")),
                    Ok(Err(e)) if e.is_no_records_found() => {
                        Err(format!("{host}: no A/AAAA records"))
                    }
                    Ok(Err(e)) => Err(format!("{host}: {e}")),
                    Ok(Ok(l)) => Ok(l.iter().collect::<Vec<_>>()),
                },
            };
            match outcome {
                Ok(addrs) if !addrs.is_empty() => {
                    let shown: Vec<String> = addrs.iter().take(4).map(|a| a.to_string()).collect();
                    let more = if addrs.len() > 4 { ", …" } else { "" };
                    run.push(
                        Level::Dns,
                        Outcome::Ok,
                        t.elapsed(),
                        format!("{host} → {}{more}", shown.join(", ")),
                    );
                    resolved = addrs;
                }
                Ok(_) => {
                    run.fail(Level::Dns, t.elapsed(), format!("{host}: no addresses"));
                    return None;
                }
                Err(e) => {
                    run.fail(Level::Dns, t.elapsed(), e);
                    return None;
                }
            }
        }

        // tcp
        if !spec.has(Level::Tcp) {
            return None;
        }
        let addr = match spec
            .connect
            .as_ref()
            .expect("validated: tcp level has an address")
        {
            Connect::Fixed(a) => *a,
            Connect::Resolved(port) => SocketAddr::new(resolved[0], *port),
            Connect::Addrs(ips, port) => SocketAddr::new(ips[0], *port),
        };
        let t = Instant::now();
        let tcp = match until(deadline, budget, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                run.push(
                    Level::Tcp,
                    Outcome::Ok,
                    t.elapsed(),
                    format!("connected to {addr}"),
                );
                s
            }
            Ok(Err(e)) => {
                run.fail(
                    Level::Tcp,
                    t.elapsed(),
                    format!("{addr}: {}", io_reason(&e)),
                );
                return None;
            }
            Err(e) => {
                run.fail(Level::Tcp, t.elapsed(), format!("{addr}: {e}"));
                return None;
            }
        };

        // tls
        let stream: Box<dyn StreamBox> = if spec.has(Level::Tls) {
            let http = spec.http.as_ref().expect("validated: tls has a url");
            let t = Instant::now();
            let connector = match self.tls.connector(spec.ca_file.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    run.fail(Level::Tls, t.elapsed(), e);
                    return None;
                }
            };
            let name = rustls::pki_types::ServerName::try_from(http.sni.clone())
                .expect("validated server name");
            match until(deadline, budget, connector.connect(name, tcp)).await {
                Ok(Ok(tls)) => {
                    let (outcome, detail) = super::tls::describe(&tls, spec.cert_warning_days);
                    run.push(Level::Tls, outcome, t.elapsed(), detail);
                    Box::new(tls)
                }
                Ok(Err(e)) => {
                    run.fail(Level::Tls, t.elapsed(), super::tls::error_reason(&e));
                    return None;
                }
                Err(e) => {
                    run.fail(Level::Tls, t.elapsed(), e);
                    return None;
                }
            }
        } else {
            Box::new(tcp)
        };

        if spec.has(Level::Http) {
            let http = spec.http.as_ref().expect("validated: http has a url");
            self.http_levels(run, http, stream, deadline, budget).await
        } else {
            Some(Watch::new(WatchInner::Stream(stream)))
        }
    }

    async fn http_levels(
        &self,
        run: &mut Run<'_>,
        http: &HttpSpec,
        stream: Box<dyn StreamBox>,
        deadline: tokio::time::Instant,
        budget: Duration,
    ) -> Option<Watch> {
        let spec = run.spec;
        let t = Instant::now();
        let (mut sender, conn) = match until(
            deadline,
            budget,
            http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)),
        )
        .await
        {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                run.fail(Level::Http, t.elapsed(), format!("HTTP/1.1 setup: {e}"));
                return None;
            }
            Err(e) => {
                run.fail(Level::Http, t.elapsed(), e);
                return None;
            }
        };
        // The connection task ends when the check is over and `sender` is dropped; abort it
        // anyway so nothing outlives the run.
        let conn = AbortOnDrop(Some(tokio::spawn(conn)));

        let limit = spec
            .content
            .as_ref()
            .map(|c| c.max_bytes)
            .unwrap_or(DEFAULT_BODY_LIMIT);
        let main = fetch(
            &mut sender,
            http,
            &http.path,
            http.head,
            limit,
            deadline,
            budget,
        )
        .await;
        let resp = match main {
            Err(e) => {
                run.fail(Level::Http, t.elapsed(), e);
                return None;
            }
            Ok(r) => r,
        };
        let total = t.elapsed();
        let resp_close = resp
            .headers
            .get(http::header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"));
        let status_ok = http.expect.iter().any(|m| m.matches(resp.status));
        let body_note = match (&resp.body, resp.truncated) {
            (_, true) => format!("more than {limit} bytes"),
            (b, false) => format!("{} bytes", b.len()),
        };
        let detail = format!(
            "{} {}; ttfb {}; total {}; {body_note}",
            resp.status,
            resp.reason,
            ms(resp.ttfb),
            ms(total)
        );
        if !status_ok {
            let expected: Vec<String> = http.expect.iter().map(ToString::to_string).collect();
            run.fail(
                Level::Http,
                total,
                format!("{detail} (expected {})", expected.join(", ")),
            );
            return None;
        }
        run.push(Level::Http, Outcome::Ok, total, detail);

        if spec.has(Level::Content) {
            let c = spec.content.as_ref().expect("validated: content spec");
            let tc = Instant::now();
            let verdict = if resp.truncated {
                Err(format!(
                    "body larger than max_bytes ({} bytes)",
                    c.max_bytes
                ))
            } else {
                judge(&c.matcher, &resp.body)
            };
            let latency = resp.body_time + tc.elapsed();
            match verdict {
                Ok(d) => run.push(Level::Content, Outcome::Ok, latency, d),
                Err(e) => {
                    run.fail(Level::Content, latency, e);
                    return None;
                }
            }
        }

        if spec.has(Level::Cache) {
            let tc = Instant::now();
            let (headers, latency) = match &http.cache_path {
                None => (resp.headers, resp.ttfb),
                Some(path) => {
                    match fetch(&mut sender, http, path, false, limit, deadline, budget).await {
                        Ok(r) if http.expect.iter().any(|m| m.matches(r.status)) => {
                            (r.headers, tc.elapsed())
                        }
                        Ok(r) => {
                            run.fail(
                                Level::Cache,
                                tc.elapsed(),
                                format!("canary {path}: status {} {}", r.status, r.reason),
                            );
                            return None;
                        }
                        Err(e) => {
                            run.fail(Level::Cache, tc.elapsed(), format!("canary {path}: {e}"));
                            return None;
                        }
                    }
                }
            };
            let (obs, detail) = read_cache_headers(&headers);
            run.levels.push(LevelResult {
                level: Level::Cache,
                outcome: Outcome::Ok,
                latency,
                detail,
                cache: obs,
            });
        }
        // Keep the connection unless the server said it will close it.
        let closing = resp_close;
        let mut conn = conn;
        match conn.0.take() {
            Some(handle) if !closing => Some(Watch::new(WatchInner::Http {
                _sender: sender,
                conn: handle,
            })),
            Some(handle) => {
                handle.abort();
                None
            }
            None => None,
        }
    }
}

trait StreamBox: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: Stream> StreamBox for T {}

struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);
impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

enum WatchInner {
    Http {
        /// Dropping the sender would close the connection.
        _sender: http1::SendRequest<Empty<Bytes>>,
        conn: tokio::task::JoinHandle<Result<(), hyper::Error>>,
    },
    Stream(Box<dyn StreamBox>),
}

/// A passing check's connection, kept open until the next check. [`Watch::closed`] completes
/// when the target closes or resets it — an edge that crashed or was killed — so the prober
/// re-checks at once instead of at the next interval. Dropping it closes the connection.
pub struct Watch {
    inner: WatchInner,
    since: Instant,
}

impl Watch {
    fn new(inner: WatchInner) -> Self {
        Self {
            inner,
            since: Instant::now(),
        }
    }

    /// How long the connection has been watched.
    pub fn age(&self) -> Duration {
        self.since.elapsed()
    }

    /// Completes when the peer closes or resets the connection.
    pub async fn closed(&mut self) {
        match &mut self.inner {
            WatchInner::Http { conn, .. } => {
                let _ = conn.await;
            }
            WatchInner::Stream(s) => {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 256];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let WatchInner::Http { conn, .. } = &self.inner {
            conn.abort();
        }
    }
}

struct Fetched {
    status: u16,
    reason: String,
    headers: http::HeaderMap,
    ttfb: Duration,
    body: Vec<u8>,
    truncated: bool,
    body_time: Duration,
}

async fn fetch(
    sender: &mut http1::SendRequest<Empty<Bytes>>,
    spec: &HttpSpec,
    path: &str,
    head: bool,
    limit: u64,
    deadline: tokio::time::Instant,
    budget: Duration,
) -> Result<Fetched, String> {
    let mut req = http::Request::builder()
        .method(if head {
            http::Method::HEAD
        } else {
            http::Method::GET
        })
        .uri(path)
        .header(http::header::HOST, &spec.host_header);
    let has_ua = spec
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("user-agent"));
    if !has_ua {
        req = req.header(http::header::USER_AGENT, USER_AGENT);
    }
    for (k, v) in &spec.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request: {e}"))?;
    until(deadline, budget, sender.ready())
        .await?
        .map_err(|e| format!("connection closed: {e}"))?;
    let t = Instant::now();
    let resp = until(deadline, budget, sender.send_request(req))
        .await?
        .map_err(|e| format!("no response: {}", hyper_reason(&e)))?;
    let ttfb = t.elapsed();
    let status = resp.status();
    let (parts, mut body) = resp.into_parts();
    let tb = Instant::now();
    let mut buf = Vec::new();
    let mut truncated = false;
    if !head {
        loop {
            let frame = until(deadline, budget, body.frame()).await?;
            match frame {
                None => break,
                Some(Err(e)) => return Err(format!("body: {}", hyper_reason(&e))),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        if buf.len() as u64 + data.len() as u64 > limit {
                            truncated = true;
                            break;
                        }
                        buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
    Ok(Fetched {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("").to_string(),
        headers: parts.headers,
        ttfb,
        body: buf,
        truncated,
        body_time: tb.elapsed(),
    })
}

fn judge(m: &ContentMatch, body: &[u8]) -> Result<String, String> {
    match m {
        ContentMatch::Sha256(want) => {
            let got: [u8; 32] = Sha256::digest(body).into();
            if &got == want {
                Ok(format!("sha256 matches ({} bytes)", body.len()))
            } else {
                Err(format!(
                    "sha256 {} differs from the expected {}",
                    hex::encode(&got[..8]),
                    hex::encode(&want[..8])
                ))
            }
        }
        ContentMatch::Contains(s) => {
            let found = !s.is_empty() && body.windows(s.len()).any(|w| w == s.as_bytes());
            if found {
                Ok(format!("body contains {s:?}"))
            } else {
                Err(format!("body does not contain {s:?}"))
            }
        }
        ContentMatch::Regex(re) => {
            let r = re.0.as_str();
            if re.0.is_match(body) {
                Ok(format!("body matches /{r}/"))
            } else {
                Err(format!("body does not match /{r}/"))
            }
        }
    }
}

fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

fn hyper_reason(e: &hyper::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
