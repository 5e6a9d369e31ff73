//! The control plane under faults: a task that panics (here: the clock it reads, while the
//! control-plane lock is held) is logged and counted, answers go on, and later ticks run.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{DEMO, TestServer, query, udp};
use hickory_proto::rr::{RData, RecordType};
use steerd::clock::{Clock, Now, SystemClock};
use steerd::health::machine::{Override, OverrideKind};

/// The machine's clock, which panics once when armed.
struct PanicOnce {
    inner: SystemClock,
    armed: AtomicBool,
}

impl Clock for PanicOnce {
    fn now(&self) -> Now {
        if self.armed.swap(false, Ordering::SeqCst) {
            panic!("injected fault: the clock failed");
        }
        self.inner.now()
    }
}

fn cname(srv: &TestServer, name: &str) -> String {
    let m = udp(srv.udp, &query(name, RecordType::A, None));
    match m.answers.first().map(|r| &r.data) {
        Some(RData::CNAME(c)) => c.0.to_string(),
        other => panic!("no CNAME: {other:?}"),
    }
}

#[track_caller]
fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_panicking_tick_is_counted_and_later_ticks_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, DEMO).unwrap();
    let clock = Arc::new(PanicOnce {
        inner: SystemClock::new(),
        armed: AtomicBool::new(false),
    });
    let srv = TestServer::start_file_clock(&path, false, clock.clone(), |cfg| {
        cfg.alerts = Default::default();
    });
    let control = srv.server.as_ref().unwrap().control().clone();
    assert_eq!(
        cname(&srv, "assets.example.com"),
        "example.global.cdn-a.net."
    );
    let panics = || {
        control
            .metrics()
            .task_panics
            .with_label_values(&["tick"])
            .get()
    };
    assert_eq!(panics(), 0);
    clock.armed.store(true, Ordering::SeqCst);
    wait_for("the tick's panic to be counted", 10, || panics() == 1);
    // Answers go on.
    assert_eq!(
        cname(&srv, "assets.example.com"),
        "example.global.cdn-a.net."
    );
    // The lock is usable and later ticks run: an override that only a tick can expire ends.
    let now = control.now().wall_ms;
    control
        .set_override(
            "cdn-a",
            Some(Override {
                kind: OverrideKind::ForcedDown,
                until_ms: Some(now + 2_000),
                reason: "test".into(),
                set_at_ms: now,
            }),
        )
        .unwrap();
    assert_eq!(
        cname(&srv, "assets.example.com"),
        "example.b-cdn.example.net."
    );
    wait_for("a later tick to expire the override", 15, || {
        cname(&srv, "assets.example.com") == "example.global.cdn-a.net."
    });
    assert_eq!(panics(), 1);
}

/// Loading a GeoIP database (a reload that names one) reads the file with no control-plane
/// lock held and off the async threads: the admin API and TCP DNS answer while it loads.
#[test]
fn the_api_and_tcp_dns_answer_while_a_geo_database_loads() {
    use std::sync::atomic::AtomicUsize;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, DEMO).unwrap();
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("geodb/geo-whois-asn-country.mmdb");
    let with_db = Arc::new(AtomicBool::new(false));
    let flag = with_db.clone();
    let srv = TestServer::start_file_clock(
        &path,
        false,
        steerd::clock::SystemClock::shared(),
        move |cfg| {
            cfg.alerts = Default::default();
            if flag.load(Ordering::SeqCst) {
                cfg.geo.database = Some(shipped.clone());
            }
        },
    );
    let admin = srv.admin.unwrap();
    let tcp = srv.tcp;
    with_db.store(true, Ordering::SeqCst);
    let reloading = Arc::new(AtomicBool::new(true));
    let (during_status, during_dns) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let watcher = {
        let (reloading, s, d) = (reloading.clone(), during_status.clone(), during_dns.clone());
        std::thread::spawn(move || {
            let http = common::http::Http::new(admin);
            while reloading.load(Ordering::SeqCst) {
                let ok = http.get("/v1/status").status == 200;
                if ok && reloading.load(Ordering::SeqCst) {
                    s.fetch_add(1, Ordering::SeqCst);
                }
                let m = common::tcp(tcp, &query("assets.example.com", RecordType::A, None));
                if !m.answers.is_empty() && reloading.load(Ordering::SeqCst) {
                    d.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    let http = common::http::Http::new(admin);
    let r = http.post("/v1/reload", serde_json::json!({}));
    reloading.store(false, Ordering::SeqCst);
    watcher.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    let db = srv.server.as_ref().unwrap().control().geo();
    assert!(db.db.is_some(), "the database was loaded");
    // The load takes seconds in a debug build: answers kept coming all along (a blocked API
    // gets at most the few requests made before the load began).
    assert!(
        during_status.load(Ordering::SeqCst) >= 50 && during_dns.load(Ordering::SeqCst) >= 50,
        "answered while the database loaded: {} status, {} TCP DNS",
        during_status.load(Ordering::SeqCst),
        during_dns.load(Ordering::SeqCst)
    );
}
