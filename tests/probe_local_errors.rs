//! The prober when this machine runs out of file descriptors: its checks cannot open sockets
//! ("Too many open files"), which says nothing about the CDNs. A real steerd (admin API on) probes
//! a live fake CDN and a dns-level target; the test then exhausts the process's descriptors for
//! real (a lowered RLIMIT_NOFILE filled with /dev/null) and reads `/metrics` over an admin
//! connection opened before. Alone in its test binary: the descriptor limit is per process.

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::config::{FAST_CHECK, base, failover, health_check, record};
use common::fakecdn::{CdnOptions, http_cdn};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use steerd::config::ValidConfig;

fn config(cdn: SocketAddr, dns: Option<SocketAddr>) -> ValidConfig {
    let mut text = format!(
        "{}{}\n[[targets]]\nname = \"cdn-a\"\na = [\"127.0.0.1\"]\n{}",
        base(),
        record("edge", "A", "127.0.0.1"),
        health_check(cdn, FAST_CHECK)
    );
    let steered: &[&str] = if dns.is_some() {
        &["cdn-a", "dns-a"]
    } else {
        &["cdn-a"]
    };
    text.push_str(&failover("www.example.com", steered));
    if let Some(dns) = dns {
        // The dns level asks this very server (hickory opens a socket per query).
        text.push_str(&format!(
            r#"
[[targets]]
name = "dns-a"
a = ["127.0.0.1"]

[targets.check]
host = "edge.example.com"
resolvers = ["{dns}"]
port = {}
url = "http://www.example.com/health"
{FAST_CHECK}"#,
            cdn.port()
        ));
    }
    let mut cfg = steerd::config::parse(&text, "probe-local-errors").expect("valid config");
    cfg.server.dns_listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.server.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.server.udp_sockets = 1;
    cfg
}

/// An HTTP/1.1 connection to the admin API, kept open: it needs no new descriptor.
struct Admin(http1::SendRequest<Empty<Bytes>>);

impl Admin {
    async fn connect(addr: SocketAddr) -> Admin {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        Admin(sender)
    }

    async fn metrics(&mut self) -> String {
        self.0.ready().await.expect("admin connection open");
        let req = http::Request::get("/metrics")
            .header("host", "steerd")
            .body(Empty::new())
            .unwrap();
        let resp = self.0.send_request(req).await.expect("/metrics answers");
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }
}

/// The value of the sample `name{labels}` in a metrics text (0 when absent). `labels` as
/// exposed (sorted by name).
fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let key = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

fn failed_checks(text: &str, target: &str) -> f64 {
    ["dns", "tcp", "http", "check"]
        .iter()
        .map(|level| {
            sample(
                text,
                "steerd_probe_checks_total",
                &format!("level=\"{level}\",result=\"fail\",target=\"{target}\""),
            )
        })
        .sum()
}

fn passed_checks(text: &str, target: &str) -> f64 {
    sample(
        text,
        "steerd_probe_checks_total",
        &format!("level=\"check\",result=\"ok\",target=\"{target}\""),
    )
}

fn local_errors(text: &str, target: &str, level: &str) -> f64 {
    sample(
        text,
        "steerd_probe_local_errors_total",
        &format!("error=\"EMFILE\",level=\"{level}\",target=\"{target}\""),
    )
}

fn up(text: &str, target: &str) -> f64 {
    sample(
        text,
        "steerd_target_up",
        &format!("role=\"edge\",target=\"{target}\""),
    )
}

/// Poll `/metrics` every 100 ms until `cond` holds on it; the last text.
async fn wait_metrics(
    admin: &mut Admin,
    within: Duration,
    what: &str,
    cond: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = admin.metrics().await;
        if cond(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {within:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every descriptor of this process in use: the soft RLIMIT_NOFILE lowered to just above the
/// highest descriptor open, and what is left filled with /dev/null. Dropping it gives them back.
struct Exhausted {
    fillers: Vec<File>,
    limit: libc::rlimit,
}

impl Exhausted {
    fn now() -> Exhausted {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        let highest = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .max()
            .unwrap();
        let lowered = libc::rlimit {
            rlim_cur: highest + 16,
            rlim_max: limit.rlim_max,
        };
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        let mut fillers = Vec::new();
        loop {
            match File::open("/dev/null") {
                Ok(f) => fillers.push(f),
                Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
                Err(e) => panic!("opening /dev/null: {e}"),
            }
        }
        // Really exhausted: a socket cannot be made.
        let e = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
        Exhausted { fillers, limit }
    }
}

impl Drop for Exhausted {
    fn drop(&mut self) {
        self.fillers.clear();
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.limit) };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_is_no_failure_of_the_targets() {
    let cdn = http_cdn(CdnOptions::default()).await;
    let mut server = steerd::Server::start(config(cdn.addr(), None))
        .await
        .expect("server starts");
    let dns = server.udp_addrs()[0];
    tokio::task::block_in_place(|| server.apply(config(cdn.addr(), Some(dns)))).unwrap();
    let mut admin = Admin::connect(server.admin_addr().unwrap()).await;

    // Both targets pass their checks.
    let before = wait_metrics(&mut admin, Duration::from_secs(15), "passing checks", |t| {
        passed_checks(t, "cdn-a") >= 2.0 && passed_checks(t, "dns-a") >= 2.0
    })
    .await;
    for t in ["cdn-a", "dns-a"] {
        assert_eq!(failed_checks(&before, t), 0.0, "{t}:\n{before}");
        assert_eq!(up(&before, t), 1.0, "{t}:\n{before}");
    }

    let exhausted = Exhausted::now();
    // Checks go on failing to open sockets: local errors, counted per target and level (or,
    // as before the fix, failed checks).
    let during = wait_metrics(&mut admin, Duration::from_secs(20), "local errors", |t| {
        let failed = failed_checks(t, "cdn-a") + failed_checks(t, "dns-a");
        failed > 0.0
            || (local_errors(t, "cdn-a", "tcp") >= 3.0 && local_errors(t, "dns-a", "dns") >= 3.0)
    })
    .await;
    // None of it is a failed check, a confirmation or a down target.
    for t in ["cdn-a", "dns-a"] {
        assert_eq!(failed_checks(&during, t), 0.0, "{t}:\n{during}");
        assert_eq!(up(&during, t), 1.0, "{t}:\n{during}");
    }
    assert!(
        !during.contains("steerd_target_transitions_total{"),
        "{during}"
    );
    let passed = (
        passed_checks(&during, "cdn-a"),
        passed_checks(&during, "dns-a"),
    );

    // Descriptors back: the checks pass again.
    drop(exhausted);
    let after = wait_metrics(
        &mut admin,
        Duration::from_secs(15),
        "checks passing again",
        |t| {
            passed_checks(t, "cdn-a") >= passed.0 + 2.0
                && passed_checks(t, "dns-a") >= passed.1 + 2.0
        },
    )
    .await;
    for t in ["cdn-a", "dns-a"] {
        assert_eq!(failed_checks(&after, t), 0.0, "{t}:\n{after}");
        assert_eq!(up(&after, t), 1.0, "{t}:\n{after}");
    }
    server.shutdown().await;
}
