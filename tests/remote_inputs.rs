//! Pushed health inputs over the real admin API and DNS: remote agents' observations of any
//! level move a target's health, a target known only from remote agents recovers when their
//! failures stop (or when they fall silent), and the control plane's health time is a clock
//! the test drives (a `ManualClock`), so minutes pass in milliseconds.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use common::admin::FileServer;
use common::config::{
    EU_NET, NO_GEODB, US_NET, base, cname_target, failover, health_check, test_nets, zone_ns1,
};
use common::http::Http;
use hickory_proto::rr::{RData, RecordType};
use serde_json::{Value, json};
use steerd::clock::ManualClock;

/// cdn-r (known only from remote agents) and cdn-b behind www.example.com, short recovery.
fn config() -> String {
    format!(
        "{}\n[health]\nrecover_for = 20\navailability_recover_for = 20\nmin_dwell = 5\n{}{}{}",
        base(),
        cname_target("cdn-r"),
        cname_target("cdn-b"),
        failover("www.example.com", &["cdn-r", "cdn-b"])
    )
}

/// A server from a file (tests/common/admin.rs) whose control plane reads a manual clock.
struct Fixture {
    fs: FileServer,
    clock: Arc<ManualClock>,
}

impl std::ops::Deref for Fixture {
    type Target = FileServer;
    fn deref(&self) -> &FileServer {
        &self.fs
    }
}

impl Fixture {
    fn start(config: &str) -> Self {
        let clock = ManualClock::from_wall();
        Fixture {
            fs: FileServer::start_clock(config, clock.clone()),
            clock,
        }
    }

    fn control(&self) -> &steerd::control::Control {
        self.srv.server.as_ref().unwrap().control()
    }

    /// One simulated second: the control plane steps at the clock's new time.
    fn second(&self) {
        self.clock.advance(Duration::from_secs(1));
        self.control().tick();
    }

    /// POST one observation of `cdn-r` from vantage fra1, stamped now on the agent's clock.
    fn observe(&self, level: &str, ok: bool) -> Value {
        let at_ms = self.control().now().wall_ms;
        self.http
            .post(
                "/v1/observations",
                json!({"vantage": "fra1", "observations": [
                    {"target": "cdn-r", "level": level, "ok": ok, "latency_ms": 41, "at_ms": at_ms}
                ]}),
            )
            .expect(202)
            .json()
    }

    fn state(&self) -> String {
        self.http.get("/v1/targets/cdn-r").expect(200).json()["state"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The CNAME www.example.com answers over UDP.
    fn answer(&self) -> String {
        let m = common::udp(
            self.srv.udp,
            &common::query("www.example.com", RecordType::A, None),
        );
        match m.answers.first().map(|r| &r.data) {
            Some(RData::CNAME(c)) => c.0.to_string(),
            other => panic!("no CNAME answer: {other:?}"),
        }
    }

    /// (from, to) of every transition of cdn-r so far.
    fn transitions(&self) -> Vec<(String, String)> {
        self.control()
            .transitions()
            .iter()
            .filter(|t| &*t.target == "cdn-r")
            .map(|t| (t.from.as_str().to_string(), t.to.as_str().to_string()))
            .collect()
    }

    /// Fail cdn-r from the remote vantage, one `level` observation a second, until it is down.
    fn fail_remotely(&self, level: &str) {
        for _ in 0..30 {
            let r = self.observe(level, false);
            assert_eq!(r["accepted"], 1, "{r}");
            self.second();
            if self.state() == "down" {
                return;
            }
        }
        panic!(
            "cdn-r never went down on remote {level} failures: {:?}",
            self.transitions()
        );
    }
}

fn down_up() -> Vec<(String, String)> {
    vec![
        ("healthy".into(), "down".into()),
        ("down".into(), "healthy".into()),
    ]
}

/// The README's example (`"level": "http"`) is not accepted and dropped: its failures take the
/// target down and the answer moves; when the agent reports passes again the target recovers
/// after the recovery windows, once, and the answer returns.
#[test]
fn http_level_observations_move_a_remote_only_target_and_it_recovers() {
    let f = Fixture::start(&config());
    assert_eq!(f.answer(), "edge.cdn-r.example.net.");
    f.fail_remotely("http");
    assert_eq!(f.answer(), "edge.cdn-b.example.net.");
    // The derived verdict is what the windows hold.
    let view = f.http.get("/v1/targets/cdn-r").expect(200).json();
    let levels: Vec<&str> = view["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["level"].as_str().unwrap())
        .collect();
    assert!(
        levels.contains(&"http") && levels.contains(&"check"),
        "{levels:?}"
    );
    // Passes again: recovered once the 1-minute recovery windows held 20 s, never failed again
    // by the old failures (still inside the 5-minute availability window).
    let mut recovered_at = None;
    for s in 0..400 {
        f.observe("http", true);
        f.second();
        if recovered_at.is_none() && f.state() == "healthy" {
            recovered_at = Some(s);
        }
    }
    let at = recovered_at.unwrap_or_else(|| panic!("never recovered: {:?}", f.transitions()));
    assert!((60..=120).contains(&at), "recovered after {at} s");
    assert_eq!(f.transitions(), down_up());
    assert_eq!(f.answer(), "edge.cdn-r.example.net.");
}

/// Every level is accepted, a check-level verdict too; a bad level is refused with 422 naming
/// the field (never accepted and dropped).
#[test]
fn every_documented_level_counts_and_a_bad_level_is_refused() {
    let f = Fixture::start(&config());
    for level in ["dns", "tcp", "tls", "http", "content", "cache", "check"] {
        let r = f.observe(level, true);
        assert_eq!(r["accepted"], 1, "{level}: {r}");
    }
    let r = f
        .http
        .post(
            "/v1/observations",
            json!({"vantage": "fra1", "observations": [
                {"target": "cdn-r", "level": "ping", "ok": false, "latency_ms": 1}
            ]}),
        )
        .expect(422)
        .json();
    let e = r["rejected"][0]["error"].as_str().unwrap();
    assert!(e.starts_with("level: "), "{e}");
    f.fail_remotely("tcp");
}

/// An agent that reported failures and then fell silent: the target stays down while its
/// failures are in the windows, then goes back to the no-data default (healthy), once.
#[test]
fn a_remote_only_target_recovers_when_its_agent_falls_silent() {
    let f = Fixture::start(&config());
    f.fail_remotely("check");
    // Five silent minutes: still down.
    for _ in 0..30 {
        f.clock.advance(Duration::from_secs(10));
        f.control().tick();
    }
    assert_eq!(f.state(), "down");
    assert_eq!(f.answer(), "edge.cdn-b.example.net.");
    for _ in 0..50 {
        f.clock.advance(Duration::from_secs(10));
        f.control().tick();
    }
    assert_eq!(f.state(), "healthy", "{:?}", f.transitions());
    let reason = f.http.get("/v1/targets/cdn-r").expect(200).json()["reason"].clone();
    assert!(
        reason
            .as_str()
            .unwrap()
            .starts_with("no health data for 10m0s"),
        "{reason}"
    );
    assert_eq!(f.transitions(), down_up());
    assert_eq!(f.answer(), "edge.cdn-r.example.net.");
}

/// The wall clock steps back 20 minutes (NTP, an operator): health time does not, so the
/// observations stamped after the step are recorded and still move the target.
#[test]
fn a_wall_clock_step_back_does_not_freeze_health_input() {
    let f = Fixture::start(&config());
    for _ in 0..20 {
        f.observe("check", true);
        f.second();
    }
    f.clock.step_wall(-20 * 60 * 1000);
    let refused = || f.control().metrics().observations_refused.get();
    f.fail_remotely("check");
    assert_eq!(refused(), 0, "observations after the step were refused");
    // Its view shows wall times as the (stepped) wall clock reads them.
    let since = f.http.get("/v1/targets/cdn-r").expect(200).json()["since"].clone();
    let since = humantime::parse_rfc3339(since.as_str().unwrap()).unwrap();
    let wall = std::time::UNIX_EPOCH + Duration::from_millis(f.control().now().wall_ms);
    let diff = wall.duration_since(since).unwrap_or_else(|e| e.duration());
    assert!(
        diff < Duration::from_secs(60),
        "since {since:?} vs wall {wall:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The cache-aware score's inputs: fresh reports, per region, and the prober's hit ratio
// ---------------------------------------------------------------------------------------------

/// Two CNAME targets at the same place (equal proximity): the cache score decides. Clients of
/// 198.51.100.0/24 are in Germany (Europe), of 203.0.113.0/24 in the US.
fn cache_config(checks: &str) -> String {
    format!(
        r#"
{NO_GEODB}{}
[probe]
interval = 1
timeout = 0.9
jitter = 0
{}
[[targets]]
name = "cdn-a"
cname = "edge.cdn-a.example.net"
latitude = 50.1
longitude = 8.7
{checks}
[[targets]]
name = "cdn-b"
cname = "edge.cdn-b.example.net"
latitude = 50.1
longitude = 8.7
[[services]]
name = "cached.example.com"
policy = "cache_aware"
targets = [{{ target = "cdn-a" }}, {{ target = "cdn-b" }}]
"#,
        test_nets(),
        zone_ns1("example.com", "127.0.0.1")
    )
}

/// The CNAME of cached.example.com for a client subnet (ECS).
fn cached(srv: &TestServer, subnet: &str) -> String {
    let net: ipnet::Ipv4Net = subnet.parse().unwrap();
    let mut q = common::query("cached.example.com", RecordType::A, None);
    let mut e = hickory_proto::op::Edns::new();
    e.set_max_payload(1232);
    e.options_mut()
        .insert(hickory_proto::rr::rdata::opt::EdnsOption::Subnet(
            hickory_proto::rr::rdata::opt::ClientSubnet::new(
                std::net::IpAddr::V4(net.addr()),
                net.prefix_len(),
                0,
            ),
        ));
    q.set_edns(e);
    let m = common::udp(srv.udp, &q);
    match m.answers.first().map(|r| &r.data) {
        Some(RData::CNAME(c)) => c.0.to_string(),
        other => panic!("no CNAME answer: {other:?}"),
    }
}

const EU: &str = EU_NET;
const US: &str = US_NET;

/// A report counts for 5 minutes (the seed's window), then the score is back to the defaults;
/// a region's report counts for that region's clients only.
#[test]
fn cache_reports_age_out_and_count_per_region() {
    let f = Fixture::start(&cache_config(""));
    // Equal everything: the configured order.
    assert_eq!(cached(&f.srv, EU), "edge.cdn-a.example.net.");
    assert_eq!(cached(&f.srv, US), "edge.cdn-a.example.net.");
    // cdn-a reports a cold cache for every client.
    f.http
        .put(
            "/v1/targets/cdn-a/cache-metrics",
            json!({"popularity": 0.1, "purge_ratio": 0.5}),
        )
        .expect(200);
    f.control().tick();
    assert_eq!(cached(&f.srv, EU), "edge.cdn-b.example.net.");
    assert_eq!(cached(&f.srv, US), "edge.cdn-b.example.net.");
    // cdn-b reports a cold cache for European clients only: they go back to cdn-a.
    let r = f
        .http
        .put(
            "/v1/targets/cdn-b/cache-metrics",
            json!({"popularity": 0.0, "purge_ratio": 1.0, "ttl_factor": 0.0, "region": "EU"}),
        )
        .expect(200)
        .json();
    assert_eq!(r["region"], "EU", "{r}");
    f.control().tick();
    assert_eq!(cached(&f.srv, EU), "edge.cdn-a.example.net.");
    assert_eq!(cached(&f.srv, US), "edge.cdn-b.example.net.");
    let view = f.http.get("/v1/targets/cdn-b").expect(200).json();
    assert_eq!(view["cache"]["regions"]["EU"]["fresh"], true, "{view}");
    // Five minutes on, nothing counts any more: equal again, the configured order.
    f.clock.advance(Duration::from_secs(301));
    f.control().tick();
    assert_eq!(cached(&f.srv, EU), "edge.cdn-a.example.net.");
    assert_eq!(cached(&f.srv, US), "edge.cdn-a.example.net.");
    let view = f.http.get("/v1/targets/cdn-a").expect(200).json();
    assert_eq!(view["cache"]["report_fresh"], false, "{view}");
    assert_eq!(
        view["cache"]["inputs"]["popularity_from"], "default",
        "{view}"
    );
    // A bad region is refused, naming the field.
    let e = f
        .http
        .put(
            "/v1/targets/cdn-a/cache-metrics",
            json!({"popularity": 0.1, "region": "XX"}),
        )
        .expect(400)
        .json();
    assert!(e["error"].as_str().unwrap().starts_with("region: "), "{e}");
}

/// The hit ratio the prober measures (X-Cache on the health response) feeds the score when
/// the CDN reports no popularity: an edge that always misses loses to one nobody measured.
#[test]
fn the_probed_hit_ratio_feeds_the_cache_score() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cdn = rt.block_on(common::fakecdn::http_cdn(
        common::fakecdn::CdnOptions::default().header("X-Cache", "MISS"),
    ));
    let checks = health_check(
        cdn.addr(),
        "levels = [\"tcp\", \"http\", \"cache\"]\n[targets.check.cache]\n",
    );
    let (_dir, path) = common::config_file(&cache_config(&checks));
    let srv = TestServer::start_file(&path, true);
    assert_eq!(cached(&srv, US), "edge.cdn-a.example.net.");
    // A few checks, each a MISS: popularity 0 from the probed hit ratio.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cached(&srv, US) != "edge.cdn-b.example.net." {
        assert!(
            std::time::Instant::now() < deadline,
            "the probed hit ratio never moved the answer"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let http = Http::new(srv.admin.unwrap());
    let view = http.get("/v1/targets/cdn-a").expect(200).json();
    assert_eq!(
        view["cache"]["inputs"]["popularity_from"], "probed hit ratio",
        "{view}"
    );
    assert_eq!(view["cache"]["inputs"]["popularity"], 0.0, "{view}");
    drop(srv);
    drop(cdn);
}
