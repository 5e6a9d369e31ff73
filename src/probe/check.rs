//! One check run: the levels of a [`CheckSpec`] in dependency order over one connection
//! (dns → tcp → tls → http → content, cache). Each level has its own result and latency; once a
//! level fails, the ones above it are reported as not reached. A level that could not run for a
//! local reason (this machine out of descriptors, buffers, memory or ports) is a
//! [`Outcome::Local`], which is no observation of the target.

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
use super::local::{LocalError, Seen, WatchedRuntime};
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
    /// Not run for a local reason: says nothing about the target.
    Local(LocalError),
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
            Outcome::NotReached => "not reached",
            Outcome::Local(_) => "local error",
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
    /// Every level that ran passed (a local error is no pass).
    pub fn ok(&self) -> bool {
        self.levels
            .iter()
            .all(|l| !matches!(l.outcome, Outcome::Fail | Outcome::Local(_)))
    }

    /// The level that failed, if any.
    pub fn failure(&self) -> Option<&LevelResult> {
        self.levels.iter().find(|l| l.outcome == Outcome::Fail)
    }

    /// The level that could not run for a local reason, and that reason.
    pub fn local_error(&self) -> Option<(&LevelResult, LocalError)> {
        self.levels.iter().find_map(|l| match l.outcome {
            Outcome::Local(e) => Some((l, e)),
            _ => None,
        })
    }

    /// One-line summary: "ok", "tcp: connection refused" or "tcp: local error: …".
    pub fn summary(&self) -> String {
        if let Some((l, _)) = self.local_error() {
            return format!("{}: local error: {}", l.level, l.detail);
        }
        match self.failure() {
            Some(f) => format!("{}: {}", f.level, f.detail),
            None => "ok".into(),
        }
    }

    /// Observations for the health windows: one per level that ran, plus the run's verdict
    /// (level `check`, latency = the whole run). Levels not reached are not observations. A run
    /// with a local error gives only the levels that passed before it, and no verdict.
    pub fn observations(&self, vantage: &Arc<str>) -> Vec<Observation> {
        let local = self.local_error().is_some();
        let mut out: Vec<Observation> = self
            .levels
            .iter()
            .take_while(|l| !matches!(l.outcome, Outcome::Local(_)))
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
        if local {
            return out;
        }
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

impl RunResult {
    /// A heartbeat on the kept connection that got no answer within the check's timeout: a
    /// failure of the http level (the levels below it were not run again).
    pub fn unanswered_beat(
        target: &Arc<str>,
        spec: &CheckSpec,
        started_ms: u64,
        total: Duration,
    ) -> RunResult {
        let path = spec.http.as_ref().map_or("/", |h| h.path.as_str());
        let mut run = Run {
            spec,
            levels: Vec::new(),
        };
        run.fail(
            Level::Http,
            total,
            format!(
                "no answer to a heartbeat (HEAD {path}) on the kept connection within {:.1} s \
                 (check timeout)",
                spec.timing.timeout.as_secs_f64()
            ),
        );
        RunResult {
            target: target.clone(),
            started_ms,
            started: Instant::now()
                .checked_sub(total)
                .unwrap_or_else(Instant::now),
            total,
            levels: run.levels,
        }
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

type Resolver = hickory_resolver::Resolver<WatchedRuntime>;
/// A resolver, and the local errors of its sockets.
type WatchedResolver = (Resolver, Arc<Seen>);

/// What checks share: resolvers per resolver list (with the local errors of their sockets),
/// TLS configurations per CA file.
#[derive(Default)]
pub struct Checker {
    resolvers: Mutex<FxHashMap<Vec<SocketAddr>, WatchedResolver>>,
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

/// How long a run may take: until `deadline`, `allotted` after its start; `timeout` is the
/// check's (a confirmation re-check may be allotted less, see `super::target_loop`).
#[derive(Debug, Clone, Copy)]
struct Budget {
    deadline: tokio::time::Instant,
    timeout: Duration,
    allotted: Duration,
}

impl Budget {
    fn timed_out(&self) -> String {
        if self.allotted + Duration::from_millis(1) < self.timeout {
            format!(
                "timed out (no answer in {:.2} s, after the first failure's {:.1} s check timeout)",
                self.allotted.as_secs_f64(),
                self.timeout.as_secs_f64()
            )
        } else {
            format!(
                "timed out (check timeout {:.1} s)",
                self.timeout.as_secs_f64()
            )
        }
    }
}

/// Run `fut` until the budget's deadline; Err(detail) on timeout.
async fn until<T>(b: Budget, fut: impl std::future::Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout_at(b.deadline, fut)
        .await
        .map_err(|_| b.timed_out())
}

/// Why a level failed, and whether the cause is local (then it is no failure of the target).
struct Failure {
    detail: String,
    local: Option<LocalError>,
}

impl From<String> for Failure {
    fn from(detail: String) -> Self {
        Failure {
            detail,
            local: None,
        }
    }
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
        self.not_reached(level, "failed");
    }

    /// Record `f`: a failure of `level`, or a local error when that is its cause.
    fn failed(&mut self, level: Level, latency: Duration, f: Failure) {
        match f.local {
            None => self.fail(level, latency, f.detail),
            Some(e) => {
                let detail = format!("{} ({}: not a failure of the target)", f.detail, e.name());
                self.push(level, Outcome::Local(e), latency, detail);
                self.not_reached(level, "had a local error");
            }
        }
    }

    fn not_reached(&mut self, level: Level, why: &str) {
        for l in self.spec.levels.iter().filter(|l| **l > level) {
            self.levels.push(LevelResult {
                level: *l,
                outcome: Outcome::NotReached,
                latency: Duration::ZERO,
                detail: format!("{level} {why}"),
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

    fn resolver(
        &self,
        servers: &[SocketAddr],
        timeout: Duration,
    ) -> Result<WatchedResolver, Failure> {
        let mut map = self.resolvers.lock().expect("resolver map");
        if let Some(r) = map.get(servers) {
            return Ok(r.clone());
        }
        use hickory_resolver::config::{
            ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig,
        };
        let runtime = WatchedRuntime::default();
        let seen = runtime.seen();
        let mut builder = if servers.is_empty() {
            hickory_resolver::Resolver::builder(runtime).map_err(|e| Failure {
                detail: format!("cannot read the system resolver configuration: {e}"),
                local: LocalError::of_net(&e),
            })?
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
                runtime,
            )
        };
        let o = builder.options_mut();
        // Every check asks afresh: a cached answer would hide a CDN whose DNS just broke.
        o.cache_size = 0;
        o.use_hosts_file = ResolveHosts::Never;
        o.attempts = 1;
        o.timeout = timeout;
        o.ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4AndIpv6;
        let r = builder.build().map_err(|e| Failure {
            detail: format!("cannot build the resolver: {e}"),
            local: LocalError::of_net(&e),
        })?;
        map.insert(servers.to_vec(), (r.clone(), seen.clone()));
        Ok((r, seen))
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
        let deadline = tokio::time::Instant::now() + spec.timing.timeout;
        self.run_watch_until(target, spec, deadline).await
    }

    /// Like [`Checker::run_watch`], with `deadline` instead of the check's timeout (a
    /// confirmation re-check's, which may be shorter).
    pub async fn run_watch_until(
        &self,
        target: &Arc<str>,
        spec: &CheckSpec,
        deadline: tokio::time::Instant,
    ) -> (RunResult, Option<Watch>) {
        let started_ms = now_ms();
        let t0 = Instant::now();
        let budget = Budget {
            deadline,
            timeout: spec.timing.timeout,
            allotted: deadline.saturating_duration_since(tokio::time::Instant::now()),
        };
        let mut run = Run {
            spec,
            levels: Vec::with_capacity(spec.levels.len()),
        };
        let watch = self.run_levels(&mut run, budget).await;
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

    async fn run_levels(&self, run: &mut Run<'_>, budget: Budget) -> Option<Watch> {
        let spec = run.spec;
        // dns
        let mut resolved: Vec<IpAddr> = Vec::new();
        if spec.has(Level::Dns) {
            let host = spec
                .dns_host
                .clone()
                .expect("validated: dns level has a host");
            let t = Instant::now();
            let outcome = match self.resolver(&spec.resolvers, budget.timeout) {
                Err(e) => Err(e),
                Ok((r, seen)) => {
                    let mark = seen.mark();
                    match until(budget, r.lookup_ip(host.clone())).await {
                        // A lookup that timed out while its sockets could not be opened.
                        Err(e) => Err(Failure {
                            detail: e,
                            local: seen.since(mark),
                        }),
                        Ok(Err(e)) if e.is_nx_domain() => Err(format!("{host}: NXDOMAIN").into()),
                        Ok(Err(e)) if e.is_no_records_found() => {
                            Err(format!("{host}: no A/AAAA records").into())
                        }
                        Ok(Err(e)) => {
                            let local = LocalError::of(&e).or_else(|| seen.since(mark));
                            Err(Failure {
                                detail: format!("{host}: {e}"),
                                local,
                            })
                        }
                        Ok(Ok(l)) => Ok(l.iter().collect::<Vec<_>>()),
                    }
                }
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
                    run.failed(Level::Dns, t.elapsed(), e);
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
        let tcp = match until(budget, TcpStream::connect(addr)).await {
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
                let f = Failure {
                    detail: format!("{addr}: {}", io_reason(&e)),
                    local: LocalError::of_io(&e),
                };
                run.failed(Level::Tcp, t.elapsed(), f);
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
                Err((detail, local)) => {
                    run.failed(Level::Tls, t.elapsed(), Failure { detail, local });
                    return None;
                }
            };
            let name = rustls::pki_types::ServerName::try_from(http.sni.clone())
                .expect("validated server name");
            match until(budget, connector.connect(name, tcp)).await {
                Ok(Ok(tls)) => {
                    let (outcome, detail) = super::tls::describe(&tls, spec.cert_warning_days);
                    run.push(Level::Tls, outcome, t.elapsed(), detail);
                    Box::new(tls)
                }
                Ok(Err(e)) => {
                    let f = Failure {
                        detail: super::tls::error_reason(&e),
                        local: LocalError::of_io(&e),
                    };
                    run.failed(Level::Tls, t.elapsed(), f);
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
            self.http_levels(run, http, stream, budget).await
        } else {
            Some(Watch::new(WatchInner::Stream(stream)))
        }
    }

    async fn http_levels(
        &self,
        run: &mut Run<'_>,
        http: &HttpSpec,
        stream: Box<dyn StreamBox>,
        budget: Budget,
    ) -> Option<Watch> {
        let spec = run.spec;
        let t = Instant::now();
        let (mut sender, conn) = match until(
            budget,
            http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)),
        )
        .await
        {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                let f = Failure {
                    detail: format!("HTTP/1.1 setup: {e}"),
                    local: LocalError::of(&e),
                };
                run.failed(Level::Http, t.elapsed(), f);
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
        let main = fetch(&mut sender, http, &http.path, http.head, limit, budget).await;
        let resp = match main {
            Err(e) => {
                run.failed(Level::Http, t.elapsed(), e);
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
                Some(path) => match fetch(&mut sender, http, path, false, limit, budget).await {
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
                        let f = Failure {
                            detail: format!("canary {path}: {}", e.detail),
                            local: e.local,
                        };
                        run.failed(Level::Cache, tc.elapsed(), f);
                        return None;
                    }
                },
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
                sender,
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
        /// Heartbeats go out on it; dropping it would close the connection.
        sender: http1::SendRequest<Empty<Bytes>>,
        conn: tokio::task::JoinHandle<Result<(), hyper::Error>>,
    },
    Stream(Box<dyn StreamBox>),
}

/// What a heartbeat on a kept connection found.
#[derive(Debug)]
pub enum Beat {
    /// An answer, whatever its status: the edge is alive. `closing`: it said it will close the
    /// connection.
    Answered { latency: Duration, closing: bool },
    /// The connection closed or failed.
    Lost(String),
    /// No answer by the deadline.
    TimedOut,
}

/// A passing check's connection, kept open until the next check. [`Watch::closed`] completes
/// when the target closes or resets it — an edge that crashed or was killed — so the prober
/// re-checks at once instead of at the next interval; [`Watch::beat`] asks on it whether the
/// edge still answers (an edge that hangs keeps its connections open). Dropping it closes the
/// connection.
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

    /// Heartbeats need an HTTP connection.
    pub fn can_beat(&self) -> bool {
        matches!(self.inner, WatchInner::Http { .. })
    }

    /// Send `HEAD <path>` on the kept connection and wait for the answer until `deadline`.
    pub async fn beat(&mut self, spec: &HttpSpec, deadline: tokio::time::Instant) -> Beat {
        let WatchInner::Http { sender, .. } = &mut self.inner else {
            return Beat::Lost("not an HTTP connection".into());
        };
        let req = match request(spec, &spec.path, true) {
            Ok(r) => r,
            Err(e) => return Beat::Lost(e),
        };
        let t = Instant::now();
        let answer = tokio::time::timeout_at(deadline, async {
            sender
                .ready()
                .await
                .map_err(|e| format!("connection closed: {e}"))?;
            sender
                .send_request(req)
                .await
                .map_err(|e| format!("no response: {}", hyper_reason(&e)))
        })
        .await;
        match answer {
            Err(_) => Beat::TimedOut,
            Ok(Err(e)) => Beat::Lost(e),
            Ok(Ok(resp)) => {
                let closing = resp
                    .headers()
                    .get(http::header::CONNECTION)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.to_ascii_lowercase().contains("close"));
                Beat::Answered {
                    latency: t.elapsed(),
                    closing,
                }
            }
        }
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

/// The check's request for `path`: its Host header, User-Agent and extra headers.
fn request(spec: &HttpSpec, path: &str, head: bool) -> Result<http::Request<Empty<Bytes>>, String> {
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
    req.body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request: {e}"))
}

async fn fetch(
    sender: &mut http1::SendRequest<Empty<Bytes>>,
    spec: &HttpSpec,
    path: &str,
    head: bool,
    limit: u64,
    budget: Budget,
) -> Result<Fetched, Failure> {
    let req = request(spec, path, head)?;
    until(budget, sender.ready()).await?.map_err(|e| Failure {
        detail: format!("connection closed: {e}"),
        local: LocalError::of(&e),
    })?;
    let t = Instant::now();
    let resp = until(budget, sender.send_request(req))
        .await?
        .map_err(|e| Failure {
            detail: format!("no response: {}", hyper_reason(&e)),
            local: LocalError::of(&e),
        })?;
    let ttfb = t.elapsed();
    let status = resp.status();
    let (parts, mut body) = resp.into_parts();
    let tb = Instant::now();
    let mut buf = Vec::new();
    let mut truncated = false;
    if !head {
        loop {
            let frame = until(budget, body.frame()).await?;
            match frame {
                None => break,
                Some(Err(e)) => {
                    return Err(Failure {
                        detail: format!("body: {}", hyper_reason(&e)),
                        local: LocalError::of(&e),
                    });
                }
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
