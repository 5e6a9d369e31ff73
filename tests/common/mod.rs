//! Shared integration-test harness: start a real steerd on 127.0.0.1 port 0 and talk DNS to it
//! over real UDP and TCP sockets (hickory-proto messages), or with `dig`.
#![allow(dead_code)]

pub mod admin;
pub mod cdn_apis;
pub mod config;
pub mod fakecdn;
pub mod http;
pub mod process;
pub mod sinks;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use steerd::config::{UdpEngine, ValidConfig};

/// The shipped demo configuration.
pub const DEMO: &str = include_str!("../../config/steerd.toml");

/// A steerd server running on its own runtime, stopped on drop.
pub struct TestServer {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    /// The admin API (servers started with [`TestServer::start_file`]).
    pub admin: Option<SocketAddr>,
    pub server: Option<steerd::Server>,
    runtime: tokio::runtime::Runtime,
}

impl TestServer {
    /// Start from configuration text, listening on 127.0.0.1 with a kernel-chosen port.
    pub fn start(config: &str) -> Self {
        Self::start_with(config, |_| {})
    }

    /// Like [`TestServer::start`], keeping the targets' health checks: the prober and the
    /// health state machine steer the answers. (`start` removes the checks, so the demo's
    /// targets — checked on ports nothing listens on — stay healthy.)
    pub fn start_probing(config: &str) -> Self {
        Self::start_inner(config, true, steerd::clock::SystemClock::shared(), |_| {})
    }

    /// Like [`TestServer::start_probing`], the control plane reading the time from `clock`.
    pub fn start_probing_clock(config: &str, clock: steerd::clock::SharedClock) -> Self {
        Self::start_inner(config, true, clock, |_| {})
    }

    /// Start, letting the caller adjust the validated configuration first.
    pub fn start_with(config: &str, adjust: impl FnOnce(&mut ValidConfig)) -> Self {
        Self::start_inner(config, false, steerd::clock::SystemClock::shared(), adjust)
    }

    fn start_inner(
        config: &str,
        probing: bool,
        clock: steerd::clock::SharedClock,
        adjust: impl FnOnce(&mut ValidConfig),
    ) -> Self {
        let mut cfg = steerd::config::parse(config, "test").expect("test config is valid");
        // No admin API unless a test asks for one (the demo's 127.0.0.1:8053 would collide).
        for_tests(&mut cfg, probing, false);
        adjust(&mut cfg);
        Self::run(cfg, steerd::admin::store::ConfigSource::none(), clock)
    }

    /// Start `cfg` on a runtime of its own.
    fn run(
        cfg: ValidConfig,
        source: steerd::admin::store::ConfigSource,
        clock: steerd::clock::SharedClock,
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime
            .block_on(steerd::Server::start_with_clock(cfg, source, clock))
            .expect("server starts");
        Self {
            udp: server.udp_addrs()[0],
            tcp: server.tcp_addrs()[0],
            admin: server.admin_addr(),
            server: Some(server),
            runtime,
        }
    }

    /// Start from a configuration FILE with the admin API on 127.0.0.1 port 0: API writes
    /// are persisted to `path`, and every re-read of it (reload) gets the same test
    /// adjustments (port 0 listeners, no GeoIP database, checks removed unless `probing`).
    pub fn start_file(path: &std::path::Path, probing: bool) -> Self {
        Self::start_file_with(path, probing, |_| {})
    }

    /// Like [`TestServer::start_file`], with extra adjustments applied to every read.
    pub fn start_file_with(
        path: &std::path::Path,
        probing: bool,
        extra: impl Fn(&mut ValidConfig) + Send + Sync + 'static,
    ) -> Self {
        Self::start_file_clock(path, probing, steerd::clock::SystemClock::shared(), extra)
    }

    /// Like [`TestServer::start_file_with`], the control plane reading the time from `clock`
    /// (a `ManualClock` lets a test run minutes of health time in milliseconds).
    pub fn start_file_clock(
        path: &std::path::Path,
        probing: bool,
        clock: steerd::clock::SharedClock,
        extra: impl Fn(&mut ValidConfig) + Send + Sync + 'static,
    ) -> Self {
        let adjust: steerd::admin::store::Adjust =
            std::sync::Arc::new(move |cfg: &mut ValidConfig| {
                for_tests(cfg, probing, true);
                extra(cfg);
            });
        let source = steerd::admin::store::ConfigSource::file(path, adjust.clone())
            .expect("config file readable");
        let mut cfg = steerd::config::parse(source.text.as_deref().unwrap(), "test")
            .expect("test config is valid");
        adjust(&mut cfg);
        Self::run(cfg, source, clock)
    }

    /// Run a future on the server's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    pub fn server(&mut self) -> &mut steerd::Server {
        self.server.as_mut().unwrap()
    }
}

/// What every test server runs with: listeners on 127.0.0.1 port 0 (the admin API only with
/// `admin`), two UDP sockets on the fast engine, no GeoIP database (loading the shipped one takes
/// seconds in debug builds; tests that need geography set `cfg.geo.database` themselves), and
/// no health checks unless `probing`.
fn for_tests(cfg: &mut ValidConfig, probing: bool, admin: bool) {
    if !probing {
        for t in &mut cfg.targets {
            t.check = None;
        }
    }
    cfg.server.dns_listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.server.admin_listen = admin.then(|| "127.0.0.1:0".parse().unwrap());
    cfg.server.udp_sockets = 2;
    cfg.server.udp_engine = UdpEngine::Fast;
    cfg.geo.database = None;
    // The demo's purge edges are bench/fakecdn.py stand-ins that tests do not run; a purger
    // for them would open a store beside the test binary's working directory.
    for t in &mut cfg.targets {
        if let Some(steerd::config::purge::ProviderConfig::Http { edges, .. }) =
            t.purge.as_ref().map(|p| &p.provider)
            && edges
                .iter()
                .all(|e| e == "http://127.0.0.1:8081" || e == "http://127.0.0.1:8082")
        {
            t.purge = None;
        }
    }
}

/// A clock that runs with the machine's time and can also be jumped ahead
/// ([`RunningClock::jump`]): end-to-end tests with a real prober skip the minutes a recovery
/// window would take instead of waiting them out.
pub struct RunningClock {
    pub clock: std::sync::Arc<steerd::clock::ManualClock>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl RunningClock {
    pub fn start() -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let clock = steerd::clock::ManualClock::from_wall();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let ticker = {
            let (clock, stop) = (clock.clone(), stop.clone());
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                let mut applied = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                    let total = started.elapsed().as_millis() as u64;
                    clock.advance(Duration::from_millis(total - applied));
                    applied = total;
                }
            })
        };
        Self {
            clock,
            stop,
            ticker: Some(ticker),
        }
    }

    pub fn shared(&self) -> steerd::clock::SharedClock {
        self.clock.clone()
    }

    /// Health time (and the wall clock with it) jumps `d` ahead.
    pub fn jump(&self, d: Duration) {
        self.clock.advance(d);
    }
}

impl Drop for RunningClock {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            self.runtime.block_on(s.shutdown());
        }
    }
}

/// A query message for `name`/`qtype`, with an OPT record advertising `edns` bytes if given.
pub fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_str(name).unwrap(), qtype));
    m.metadata.recursion_desired = false;
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

/// Send raw bytes over UDP; the raw response, or None after `timeout`.
pub fn raw_udp(server: SocketAddr, bytes: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw_udp_from(&sock, server, bytes, timeout)
}

pub fn raw_udp_from(
    sock: &UdpSocket,
    server: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> Option<Vec<u8>> {
    sock.set_read_timeout(Some(timeout)).unwrap();
    sock.send_to(bytes, server).unwrap();
    let mut buf = [0u8; 65535];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// Send raw bytes over a new TCP connection (2-byte length prefix); the raw response if any.
pub fn raw_tcp(server: SocketAddr, bytes: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&server, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).unwrap();
    tcp_exchange(&mut s, bytes)
}

/// One framed query and its framed response on an open TCP connection.
pub fn tcp_exchange(s: &mut TcpStream, bytes: &[u8]) -> Option<Vec<u8>> {
    s.write_all(&framed(bytes)).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// Query over UDP and decode the answer (panics if none arrives within 2 s).
pub fn udp(server: SocketAddr, q: &Message) -> Message {
    let resp = raw_udp(server, &q.to_vec().unwrap(), Duration::from_secs(2))
        .expect("UDP answer within 2 s");
    let m = Message::from_vec(&resp).expect("response decodes");
    assert_eq!(m.metadata.id, q.metadata.id, "response ID matches query");
    m
}

/// Query over TCP and decode the answer.
pub fn tcp(server: SocketAddr, q: &Message) -> Message {
    let resp = raw_tcp(server, &q.to_vec().unwrap(), Duration::from_secs(2))
        .expect("TCP answer within 2 s");
    let m = Message::from_vec(&resp).expect("response decodes");
    assert_eq!(m.metadata.id, q.metadata.id, "response ID matches query");
    m
}

/// Run `dig` against the server; its stdout.
pub fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig is installed (.ci/run installs bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `text` written to `steerd.toml` in a new temporary directory: (the directory, the file).
pub fn config_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Poll `want` every 20 ms until it holds: the time that took, or None after `within`.
pub fn wait_until(within: Duration, mut want: impl FnMut() -> bool) -> Option<Duration> {
    let t = std::time::Instant::now();
    while t.elapsed() < within {
        if want() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Demo config with extra TOML appended (zones/targets/services tables).
pub fn demo_plus(extra: &str) -> String {
    format!("{DEMO}\n{extra}")
}

// ---------------------------------------------------------------------------------------------
// Raw wire format: hand-built packets and byte-level checks
// ---------------------------------------------------------------------------------------------

/// The big-endian u16 at byte `i` of `b`.
pub fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

/// Wire-format name from dotted text (case kept).
pub fn wire(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A header: ID, flags byte 2 and 3, then QD/AN/NS/AR counts (which need not match the body).
pub fn hdr(id: u16, b2: u8, b3: u8, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    let mut h = id.to_be_bytes().to_vec();
    h.extend_from_slice(&[b2, b3]);
    for c in [qd, an, ns, ar] {
        h.extend_from_slice(&c.to_be_bytes());
    }
    h
}

/// A question entry: name, type, class IN.
pub fn question(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = wire(name);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// An OPT record: root owner, payload size, extended rcode 0, `version`, DO bit, options.
pub fn opt_rr(size: u16, version: u8, dnssec_ok: bool, options: &[(u16, &[u8])]) -> Vec<u8> {
    let mut rdata = Vec::new();
    for (code, data) in options {
        rdata.extend_from_slice(&code.to_be_bytes());
        rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
        rdata.extend_from_slice(data);
    }
    let mut r = vec![0u8];
    r.extend_from_slice(&41u16.to_be_bytes());
    r.extend_from_slice(&size.to_be_bytes());
    r.push(0);
    r.push(version);
    r.extend_from_slice(&(if dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
    r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    r.extend_from_slice(&rdata);
    r
}

/// A raw message: header with `id`, `flags`, the given questions (QDCOUNT = their number) and
/// additional records (ARCOUNT = their number).
pub fn raw_msg(id: u16, flags: u16, questions: &[Vec<u8>], additional: &[Vec<u8>]) -> Vec<u8> {
    let [b2, b3] = flags.to_be_bytes();
    let mut m = hdr(
        id,
        b2,
        b3,
        questions.len() as u16,
        0,
        0,
        additional.len() as u16,
    );
    for part in questions.iter().chain(additional) {
        m.extend_from_slice(part);
    }
    m
}

/// The EDNS option code of Client Subnet.
pub const ECS: u16 = 8;

/// ECS option data for an IPv4 subnet (family 1, source prefix, scope 0, the prefix's octets).
pub fn ecs_data(cidr: &str) -> Vec<u8> {
    let net: ipnet::Ipv4Net = cidr.parse().unwrap();
    let mut d = 1u16.to_be_bytes().to_vec();
    d.extend_from_slice(&[net.prefix_len(), 0]);
    d.extend_from_slice(&net.addr().octets()[..net.prefix_len().div_ceil(8) as usize]);
    d
}

/// One query (with an OPT record, and an ECS option for `ecs`) over UDP or TCP.
pub fn dns(
    srv: &TestServer,
    name: &str,
    qtype: RecordType,
    ecs: Option<&str>,
    tcp: bool,
) -> Message {
    let id: u16 = rand::random();
    let data = ecs.map(ecs_data);
    let opts: Vec<(u16, &[u8])> = data.iter().map(|d| (ECS, d.as_slice())).collect();
    let q = raw_msg(
        id,
        0,
        &[question(name, u16::from(qtype))],
        &[opt_rr(1232, 0, false, &opts)],
    );
    let wait = Duration::from_secs(2);
    let what = format!(
        "{name} {qtype} ecs={ecs:?} over {}",
        if tcp { "TCP" } else { "UDP" }
    );
    let raw = if tcp {
        raw_tcp(srv.tcp, &q, wait)
    } else {
        raw_udp(srv.udp, &q, wait)
    }
    .unwrap_or_else(|| panic!("{what}: no answer"));
    let m = Message::from_vec(&raw).unwrap_or_else(|e| panic!("{what}: decode: {e}"));
    assert_eq!(m.metadata.id, id, "{what}: id");
    m
}

/// A DNS message framed for TCP: 2-byte length prefix, then the message.
pub fn framed(p: &[u8]) -> Vec<u8> {
    let mut f = (p.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(p);
    f
}

/// Raw checks of an error response with no records: at least a header, ID `id`, QR=1, low four
/// rcode bits `rcode`, ANCOUNT 0 and NSCOUNT 0. `what` names the case in failure messages.
pub fn assert_bare_error(r: &[u8], id: u16, rcode: u8, what: &str) {
    assert!(
        r.len() >= 12,
        "{what}: response shorter than a header: {r:02x?}"
    );
    assert_eq!(be16(r, 0), id, "{what}: ID");
    assert_eq!(r[2] & 0x80, 0x80, "{what}: QR");
    assert_eq!(
        r[3] & 0x0f,
        rcode,
        "{what}: rcode, got header {:02x?}",
        &r[..12]
    );
    assert_eq!(be16(r, 6), 0, "{what}: ANCOUNT");
    assert_eq!(be16(r, 8), 0, "{what}: NSCOUNT");
}
