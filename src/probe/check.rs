//! One check run: the levels of a [`CheckSpec`] in dependency order over one connection
//! (dns → tcp → tls here, then http → content, cache in [`super::http`]), with the resolvers
//! and TLS configurations that runs share.

use parking_lot::Mutex;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::Name;
use rustc_hash::FxHashMap;
use tokio::net::TcpStream;

use super::http::{self, Conn};
use super::local::{LocalError, Seen, WatchedRuntime};
use super::run::{Budget, Failure, Outcome, Run, RunResult};
use super::tls::TlsConfigs;
use super::watch::Watch;
use crate::clock::wall_ms;
use crate::config::check::{CheckSpec, Connect};
use crate::health::Level;

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

impl Checker {
    pub fn new() -> Self {
        Self::default()
    }

    fn resolver(
        &self,
        servers: &[SocketAddr],
        timeout: Duration,
    ) -> Result<WatchedResolver, Failure> {
        let mut map = self.resolvers.lock();
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
        let started_ms = wall_ms();
        let t0 = Instant::now();
        let budget = Budget {
            deadline,
            timeout: spec.timing.timeout,
            allotted: deadline.saturating_duration_since(tokio::time::Instant::now()),
        };
        let mut run = Run::new(spec);
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
            let lookup = self.resolve(spec, &host, budget).await;
            let addrs = run.step(Level::Dns, t, lookup)?;
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
        let connected = budget
            .within(TcpStream::connect(addr), |e| Failure {
                detail: io_reason(&e),
                local: LocalError::of_io(&e),
            })
            .await
            .map_err(|f| Failure {
                detail: format!("{addr}: {}", f.detail),
                local: f.local,
            });
        let tcp = run.step(Level::Tcp, t, connected)?;
        let _ = tcp.set_nodelay(true);
        run.push(
            Level::Tcp,
            Outcome::Ok,
            t.elapsed(),
            format!("connected to {addr}"),
        );

        // tls
        let stream: Box<dyn Conn> = if spec.has(Level::Tls) {
            let http = spec.http.as_ref().expect("validated: tls has a url");
            let t = Instant::now();
            let connector = self
                .tls
                .connector(spec.ca_file.as_deref())
                .map_err(|(detail, local)| Failure { detail, local });
            let connector = run.step(Level::Tls, t, connector)?;
            let name = rustls::pki_types::ServerName::try_from(http.sni.clone())
                .expect("validated server name");
            let handshake = budget
                .within(connector.connect(name, tcp), |e| Failure {
                    detail: super::tls::error_reason(&e),
                    local: LocalError::of_io(&e),
                })
                .await;
            let tls = run.step(Level::Tls, t, handshake)?;
            let (outcome, detail) = super::tls::describe(&tls, spec.cert_warning_days);
            run.push(Level::Tls, outcome, t.elapsed(), detail);
            Box::new(tls)
        } else {
            Box::new(tcp)
        };

        if spec.has(Level::Http) {
            let http = spec.http.as_ref().expect("validated: http has a url");
            let (sender, conn) = http::levels(run, http, stream, budget).await?;
            Some(Watch::http(sender, conn))
        } else {
            Some(Watch::stream(stream))
        }
    }

    /// The dns level: the addresses of `host`, at least one.
    async fn resolve(
        &self,
        spec: &CheckSpec,
        host: &Name,
        budget: Budget,
    ) -> Result<Vec<IpAddr>, Failure> {
        let (r, seen) = self.resolver(&spec.resolvers, budget.timeout)?;
        let mark = seen.mark();
        let addrs: Vec<IpAddr> = match budget.until(r.lookup_ip(host.clone())).await {
            // A lookup that timed out while its sockets could not be opened.
            Err(e) => {
                return Err(Failure {
                    detail: e,
                    local: seen.since(mark),
                });
            }
            Ok(Err(e)) if e.is_nx_domain() => return Err(format!("{host}: NXDOMAIN").into()),
            Ok(Err(e)) if e.is_no_records_found() => {
                return Err(format!("{host}: no A/AAAA records").into());
            }
            Ok(Err(e)) => {
                let local = LocalError::of(&e).or_else(|| seen.since(mark));
                return Err(Failure {
                    detail: format!("{host}: {e}"),
                    local,
                });
            }
            Ok(Ok(l)) => l.iter().collect(),
        };
        if addrs.is_empty() {
            return Err(format!("{host}: no addresses").into());
        }
        Ok(addrs)
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
