//! TCP connection limits of the DNS and admin listeners, over real sockets: a cap per source
//! and per listener, the first-message (header) and idle timeouts, and their
//! `steerd_tcp_connections_*` metrics. The caps are set low so that a handful of connections
//! from a few loopback addresses (127.0.0.x, all this machine) stand for a flood.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{TestServer, demo_plus, framed, tcp_exchange};
use hickory_proto::op::{Message, ResponseCode};
use steerd::conns::ConnLimits;

const WAIT: Duration = Duration::from_secs(10);

fn limits(max: usize, per_source: usize, first_ms: u64, idle_ms: u64) -> ConnLimits {
    ConnLimits {
        max,
        per_source,
        first_timeout: Duration::from_millis(first_ms),
        idle_timeout: Duration::from_millis(idle_ms),
    }
}

fn start(dns: ConnLimits, admin: ConnLimits) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, demo_plus("")).unwrap();
    let srv = TestServer::start_file_with(&path, false, move |cfg| {
        cfg.alerts = Default::default();
        cfg.server.tcp = dns;
        cfg.admin.conns = admin;
    });
    (srv, dir)
}

/// A TCP connection from `ip` (a 127/8 address) to `to`.
fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{ip}:0").parse().unwrap();
    s.bind(&from.into()).unwrap();
    s.connect_timeout(&to.into(), WAIT).unwrap();
    s.into()
}

/// Wait until the server closes `s` (EOF or reset); false if it is still open at `deadline`.
/// Anything the server sends before closing is read and ignored.
fn closed_by(s: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

fn dns_query(id: u16) -> Vec<u8> {
    common::query(
        "static.example.com.",
        hickory_proto::rr::RecordType::A,
        None,
    )
    .to_vec()
    .map(|mut v| {
        v[0..2].copy_from_slice(&id.to_be_bytes());
        v
    })
    .unwrap()
}

/// A query over a new connection from `ip`, answered.
#[track_caller]
fn assert_tcp_dns_answers(ip: &str, to: SocketAddr) {
    let mut s = connect_from(ip, to);
    s.set_read_timeout(Some(WAIT)).unwrap();
    let r = tcp_exchange(&mut s, &dns_query(0x4242)).expect("TCP DNS answers");
    let m = Message::from_vec(&r).unwrap();
    assert_eq!(m.metadata.id, 0x4242);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 2);
}

/// `GET path` over a new connection from `ip` (Connection: close): status and body.
fn http_get(ip: &str, to: SocketAddr, path: &str) -> (u16, String) {
    let mut s = connect_from(ip, to);
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: steerd\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("admin API answers");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// The value of `steerd_tcp_connections_{what}_total{listener, reason}`.
fn conn_metric(metrics: &str, what: &str, listener: &str, reason: &str) -> u64 {
    let key = format!(
        "steerd_tcp_connections_{what}_total{{listener=\"{listener}\",reason=\"{reason}\"}} "
    );
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no sample {key}in /metrics"))
}

/// Wait (with a deadline) until the metrics satisfy `ok`; the last metrics text.
fn wait_metrics(admin: SocketAddr, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, m) = http_get("127.0.0.9", admin, "/metrics");
        assert_eq!(status, 200);
        if ok(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dns_tcp_caps_per_source_and_closes_idle_and_half_sent_connections() {
    let (srv, _dir) = start(limits(64, 3, 500, 1000), limits(64, 16, 5000, 30000));
    let admin = srv.admin.unwrap();
    // Six idle connections from one source: three over its cap.
    let mut idle: Vec<TcpStream> = (0..6).map(|_| connect_from("127.0.0.2", srv.tcp)).collect();
    // Three that send half a query (a length prefix of 40, then 10 bytes), and one that sends
    // one byte of the prefix.
    let mut half: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = connect_from("127.0.0.3", srv.tcp);
            s.write_all(&framed(&[0u8; 40])[..12]).unwrap();
            s
        })
        .collect();
    let mut one = connect_from("127.0.0.4", srv.tcp);
    one.write_all(&[0]).unwrap();
    // One that asks a query, then stays idle.
    let mut after = connect_from("127.0.0.5", srv.tcp);
    after.set_read_timeout(Some(WAIT)).unwrap();
    assert!(tcp_exchange(&mut after, &dns_query(7)).is_some());

    // (a) A new client is answered, and (b) so is the admin API.
    assert_tcp_dns_answers("127.0.0.6", srv.tcp);
    assert_eq!(http_get("127.0.0.6", admin, "/v1/services").0, 200);

    // The three over the cap are closed at once (counted before any timeout could fire).
    let m = wait_metrics(admin, "3 connections refused per source", |m| {
        conn_metric(m, "refused", "dns", "per_source") >= 3
    });
    assert_eq!(conn_metric(&m, "refused", "dns", "per_source"), 3);

    // (c) Every idle and half-sent connection is closed, the idle one after its answer too.
    let deadline = Instant::now() + WAIT;
    for (i, s) in idle.iter_mut().chain(&mut half).enumerate() {
        assert!(
            closed_by(s, deadline),
            "connection {i} still open after {WAIT:?}"
        );
    }
    assert!(closed_by(&mut one, deadline), "one byte sent: still open");
    assert!(
        closed_by(&mut after, deadline),
        "idle after an answer: still open"
    );

    // (d) Counted by reason: 3 idle from the start + 3 half-sent + 1 byte = 7 without a
    // complete first query in time; 1 idle after its answer.
    let m = wait_metrics(admin, "the timeouts to be counted", |m| {
        conn_metric(m, "closed", "dns", "message_timeout") >= 7
            && conn_metric(m, "closed", "dns", "idle_timeout") >= 1
    });
    assert_eq!(conn_metric(&m, "closed", "dns", "message_timeout"), 7);
    assert_eq!(conn_metric(&m, "closed", "dns", "idle_timeout"), 1);
    assert_eq!(conn_metric(&m, "closed", "dns", "evicted"), 0);
    assert!(
        m.contains("steerd_tcp_connections{listener=\"dns\"} 0\n"),
        "none open"
    );
    // The source has room again.
    assert_tcp_dns_answers("127.0.0.2", srv.tcp);
}

#[test]
fn a_full_dns_listener_evicts_the_connection_idle_longest_for_a_new_client() {
    // Long timeouts: only an eviction can close a connection during this test.
    let (srv, _dir) = start(limits(4, 4, 60_000, 60_000), limits(64, 16, 5000, 30000));
    let admin = srv.admin.unwrap();
    // Accepted one after the other (each seen open before the next), so idle[0] is the one
    // without progress for the longest.
    let mut idle = Vec::new();
    for k in 1..=4 {
        idle.push(connect_from("127.0.0.2", srv.tcp));
        let open = format!("steerd_tcp_connections{{listener=\"dns\"}} {k}\n");
        wait_metrics(admin, &format!("{k} connections open"), |m| {
            m.contains(&open)
        });
    }
    // Full: a new client is still answered; the oldest idle connection makes room.
    assert_tcp_dns_answers("127.0.0.3", srv.tcp);
    let deadline = Instant::now() + WAIT;
    assert!(
        closed_by(&mut idle[0], deadline),
        "the connection idle longest is evicted"
    );
    let m = wait_metrics(admin, "the eviction to be counted", |m| {
        conn_metric(m, "closed", "dns", "evicted") >= 1
    });
    assert_eq!(conn_metric(&m, "closed", "dns", "evicted"), 1);
    assert_eq!(conn_metric(&m, "closed", "dns", "message_timeout"), 0);
}

#[test]
fn admin_caps_per_source_and_closes_slow_heads_and_idle_keep_alives() {
    let (srv, _dir) = start(limits(64, 16, 2000, 10_000), limits(64, 3, 500, 1000));
    let admin = srv.admin.unwrap();
    // Five connections sending half a request head from one source: two over its cap.
    let mut slow: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut s = connect_from("127.0.0.2", admin);
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: steerd\r\n")
                .unwrap();
            s
        })
        .collect();
    // Three that send nothing.
    let mut silent: Vec<TcpStream> = (0..3).map(|_| connect_from("127.0.0.3", admin)).collect();
    // One keep-alive connection: a whole request, its response, then nothing.
    let mut keep = connect_from("127.0.0.4", admin);
    keep.write_all(b"GET /v1/services HTTP/1.1\r\nHost: steerd\r\n\r\n")
        .unwrap();
    keep.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 1024];
    let n = keep.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "keep-alive request answered"
    );

    // (b) The API answers a new client, and (a) TCP DNS too.
    assert_eq!(http_get("127.0.0.5", admin, "/v1/services").0, 200);
    assert_tcp_dns_answers("127.0.0.5", srv.tcp);
    let m = wait_metrics(admin, "2 admin connections refused per source", |m| {
        conn_metric(m, "refused", "admin", "per_source") >= 2
    });
    assert_eq!(conn_metric(&m, "refused", "admin", "per_source"), 2);

    // (c) Slow heads and silent connections are closed after the header timeout, the
    // keep-alive one after the idle timeout.
    let deadline = Instant::now() + WAIT;
    for (i, s) in slow.iter_mut().chain(&mut silent).enumerate() {
        assert!(closed_by(s, deadline), "admin connection {i} still open");
    }
    assert!(closed_by(&mut keep, deadline), "idle keep-alive still open");

    // (d) 3 slow heads + 3 silent; 1 idle keep-alive.
    let m = wait_metrics(admin, "the admin timeouts to be counted", |m| {
        conn_metric(m, "closed", "admin", "message_timeout") >= 6
            && conn_metric(m, "closed", "admin", "idle_timeout") >= 1
    });
    assert_eq!(conn_metric(&m, "closed", "admin", "message_timeout"), 6);
    assert_eq!(conn_metric(&m, "closed", "admin", "idle_timeout"), 1);
}

/// A full admin listener makes room by closing connections of the sources with the most open,
/// so an operator's single keep-alive connection (the oldest here) outlives a flood from
/// sources holding several each.
#[test]
fn a_flood_from_a_few_sources_does_not_evict_a_lone_keep_alive_client() {
    let (srv, _dir) = start(limits(64, 16, 5000, 30000), limits(8, 4, 60_000, 60_000));
    let admin = srv.admin.unwrap();
    let mut lone = connect_from("127.0.0.20", admin);
    lone.set_read_timeout(Some(WAIT)).unwrap();
    let ask = |s: &mut TcpStream| {
        s.write_all(b"GET /v1/services HTTP/1.1\r\nHost: steerd\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap_or(0);
        buf[..n].starts_with(b"HTTP/1.1 200")
    };
    assert!(ask(&mut lone), "first request on the keep-alive connection");
    // 16 silent connections from 4 sources (4 each): 9 > 8 open, so 8 are evicted.
    let flood: Vec<TcpStream> = (0..16)
        .map(|i| connect_from(&format!("127.0.0.{}", 21 + i % 4), admin))
        .collect();
    // (The metrics requests' own connections may evict more.)
    wait_metrics(admin, "8 admin connections evicted", |m| {
        conn_metric(m, "closed", "admin", "evicted") >= 8
    });
    assert!(
        ask(&mut lone),
        "the lone client's connection survived the flood"
    );
    drop(flood);
}
