//! A TCP connection flood against a steerd process with few file descriptors
//! (RLIMIT_NOFILE = 256, set in the child before exec): the listeners' caps are fitted below the
//! limit minus `server.fd_reserve`, so while 600 idle and half-sent connections from 600
//! sources keep coming back, the prober still opens its sockets (no local error, no failed
//! check: the CDN stays up) and the admin API answers.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::config::{FAST_CHECK, NO_GEODB, failover, health_check, record, zone};
use common::fakecdn::{CdnOptions, http_cdn};
use common::free_port;

const NOFILE: u64 = 256;
const FLOOD: usize = 600;
const WAIT: Duration = Duration::from_secs(30);

fn connect_from(ip: [u8; 4], to: SocketAddr) -> Option<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    let from = SocketAddr::from((ip, 0));
    s.bind(&from.into()).ok()?;
    s.connect_timeout(&to.into(), Duration::from_secs(2)).ok()?;
    Some(s.into())
}

/// `GET path` (Connection: close): the body of a 200, or None.
fn get(admin: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: steerd\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 200")
        .then(|| text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()))
        .flatten()
}

/// The sum of the samples of `name` whose labels contain every one of `labels`.
fn sum(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Raise this test process's soft RLIMIT_NOFILE to its hard limit (the flood needs 600).
fn raise_own_limit() {
    let (soft, hard) = steerd::conns::raise_nofile_limit().expect("RLIMIT_NOFILE");
    assert!(
        soft >= FLOOD as u64 + 100,
        "the test needs {} descriptors (hard limit {hard})",
        FLOOD + 100
    );
}

#[test]
fn a_connection_flood_under_a_low_descriptor_limit_leaves_the_prober_its_sockets() {
    raise_own_limit();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cdn = rt.block_on(http_cdn(CdnOptions::default()));
    let (dns, admin) = (free_port(), free_port());
    let (dir, config) = common::config_file(&format!(
        r#"
[server]
dns_listen = ["127.0.0.1:{dns}"]
admin_listen = "127.0.0.1:{admin}"
udp_sockets = 1
fd_reserve = 64

{NO_GEODB}{}{}
[[targets]]
name = "cdn-a"
a = ["192.0.2.1"]
{}{}"#,
        zone("example.com"),
        record("static", "A", "192.0.2.10"),
        health_check(cdn.addr(), FAST_CHECK),
        failover("www.example.com", &["cdn-a"])
    ));
    let log = dir.path().join("steerd.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_steerd"));
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    // SAFETY: only setrlimit (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let admin: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let dns: SocketAddr = format!("127.0.0.1:{dns}").parse().unwrap();
    let deadline = Instant::now() + WAIT;
    let passed = |m: &str| {
        sum(
            m,
            "steerd_probe_checks_total",
            &["level=\"check\"", "result=\"ok\"", "target=\"cdn-a\""],
        )
    };
    let before = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("steerd exited ({status}): {}", log_text());
        }
        if let Some(m) = get(admin, "/metrics")
            && passed(&m) > 0.0
        {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "steerd did not start: {}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let child = Kill(child);
    assert_eq!(
        sum(&before, "steerd_fd", &["kind=\"limit\""]),
        NOFILE as f64
    );
    let cap = sum(
        &before,
        "steerd_tcp_connections_limit",
        &["listener=\"dns\""],
    );
    assert!(
        cap < 100.0,
        "the DNS cap (1024) is lowered to fit 256 descriptors: {cap}"
    );
    assert!(log_text().contains("TCP connection cap lowered"));

    // The flood: 600 sources, half sending half a query; closed connections come back.
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let src = |i: usize| [127, 1, (i / 200) as u8, (i % 200 + 1) as u8];
            let open = |i: usize| {
                let s = connect_from(src(i), dns)?;
                if i.is_multiple_of(2) {
                    let _ = (&s).write_all(&[0, 40, 0, 0, 0, 0, 0, 0]);
                }
                s.set_nonblocking(true).ok()?;
                Some(s)
            };
            let mut conns: Vec<Option<TcpStream>> = (0..FLOOD).map(open).collect();
            let mut reopened = 0u64;
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                for (i, c) in conns.iter_mut().enumerate() {
                    let closed = match c {
                        None => true,
                        Some(s) => match s.read(&mut buf) {
                            Ok(0) => true,
                            Ok(_) => false,
                            Err(e) => e.kind() != ErrorKind::WouldBlock,
                        },
                    };
                    if closed {
                        *c = open(i);
                        reopened += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            reopened
        })
    };

    // Under the flood, for at least three probe intervals: every check passes and the admin
    // API (its own listener and cap) answers. (A new TCP DNS client under a flood that
    // reconnects faster than the lowered cap of 45 can be evicted before its query is read:
    // tests/conn_limits.rs checks new clients against a flood that holds its connections.)
    let start = passed(&before);
    let deadline = Instant::now() + WAIT;
    let mut rounds = 0;
    let during = loop {
        rounds += 1;
        let m = get(admin, "/metrics")
            .unwrap_or_else(|| panic!("the admin API under the flood (round {rounds})"));
        let refused_or_closed = sum(&m, "steerd_tcp_connections_refused_total", &[])
            + sum(&m, "steerd_tcp_connections_closed_total", &[]);
        if passed(&m) >= start + 3.0 && refused_or_closed >= FLOOD as f64 {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no three checks and a full flood absorbed within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    stop.store(true, Ordering::Relaxed);
    let reopened = flood.join().unwrap();
    eprintln!("flood: {reopened} connections reopened after the server closed them");
    let failed = sum(
        &during,
        "steerd_probe_checks_total",
        &["result=\"fail\"", "target=\"cdn-a\""],
    );
    let local = sum(&during, "steerd_probe_local_errors_total", &[]);
    assert_eq!(
        (failed, local),
        (0.0, 0.0),
        "the prober kept its sockets: no failed check, no local error"
    );
    assert!(
        sum(&during, "steerd_fd", &["kind=\"open\""]) < NOFILE as f64 - 32.0,
        "descriptors stay below the limit minus most of the reserve"
    );
    assert!(!log_text().contains("accept failed"), "{}", log_text());
    drop(child);
}
