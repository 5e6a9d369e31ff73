//! The prober against real local servers: fake CDNs over HTTP and HTTPS (tests/common/fakecdn.rs),
//! a black hole, a closed port, and a real steerd as the DNS server of the dns level. Every level
//! (dns, tcp, tls, http, content, cache), the confirmation burst of the scheduler in real time,
//! and hot configuration changes through `Server`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use common::config::{NO_GEODB, base, record, zone_ns1};
use common::fakecdn::{
    BIG_LEN, CdnOptions, FakeCdn, TestCa, blackhole, closed_port, http_cdn, http_cdn_on, https_cdn,
};
use sha2::{Digest, Sha256};
use steerd::config::ValidConfig;
use steerd::config::check::CheckSpec;
use steerd::health::window::Win;
use steerd::health::{CacheStatus, Level};
use steerd::probe::{
    Checker, LevelResult, Outcome, ProbePlan, ProbeReport, Prober, RunKind, RunResult,
};
use tokio::sync::mpsc;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A `[[targets]]` entry with address records and the given `[targets.check]` body (plain keys
/// first, then any `[targets.check.content]` / `[targets.check.cache]` sub-tables).
fn target(name: &str, check: &str) -> String {
    format!("\n[[targets]]\nname = \"{name}\"\na = [\"127.0.0.1\"]\n\n[targets.check]\n{check}\n")
}

/// The base configuration (tests/common/config.rs) with `targets` appended.
fn config(targets: &str) -> ValidConfig {
    let text = format!("{}{targets}", base());
    steerd::config::parse(&text, "probe-test")
        .unwrap_or_else(|e| panic!("test config is valid: {e}\n---\n{text}"))
}

/// The check of a one-target configuration.
fn spec(check: &str) -> Arc<CheckSpec> {
    config(&target("t", check)).targets[0]
        .check
        .clone()
        .expect("the target has a check")
}

/// Run a check of target "t" once with a fresh Checker.
async fn run(check: &str) -> RunResult {
    let spec = spec(check);
    Checker::new().run(&Arc::from("t"), &spec).await
}

fn level(r: &RunResult, l: Level) -> &LevelResult {
    r.levels
        .iter()
        .find(|x| x.level == l)
        .unwrap_or_else(|| panic!("no {l} level in {r:#?}"))
}

fn outcomes(r: &RunResult) -> Vec<(Level, Outcome)> {
    r.levels.iter().map(|l| (l.level, l.outcome)).collect()
}

fn fails(r: &RunResult) -> usize {
    r.levels
        .iter()
        .filter(|l| l.outcome == Outcome::Fail)
        .count()
}

/// The tcp level connected to 127.0.0.1:`port`.
#[track_caller]
fn assert_connected_to_port(r: &RunResult, port: u16) {
    assert!(
        level(r, Level::Tcp)
            .detail
            .contains(&format!("127.0.0.1:{port}")),
        "{r:#?}"
    );
}

/// `level` failed on the check's 0.5 s timeout.
#[track_caller]
fn assert_timed_out(r: &RunResult, l: Level) {
    assert!(
        level(r, l)
            .detail
            .contains("timed out (check timeout 0.5 s)"),
        "{r:#?}"
    );
}

/// The dns level failed, so nothing above it ran.
const DNS_FAILED: [(Level, Outcome); 3] = [
    (Level::Dns, Outcome::Fail),
    (Level::Tcp, Outcome::NotReached),
    (Level::Http, Outcome::NotReached),
];

/// `url = "http://www.example.com{path}"` + `address = "{addr}"`.
fn http_check(addr: SocketAddr, path: &str) -> String {
    format!("url = \"http://www.example.com{path}\"\naddress = \"{addr}\"\n")
}

fn https_check(addr: SocketAddr, ca: Option<&std::path::Path>) -> String {
    let mut s = format!("url = \"https://www.example.com/health\"\naddress = \"{addr}\"\n");
    if let Some(ca) = ca {
        s.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
    }
    s
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Poll `cond` every 20 ms until it holds or `within` has passed; whether it held.
async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn next_report(rx: &mut mpsc::Receiver<ProbeReport>, within: Duration) -> ProbeReport {
    tokio::time::timeout(within, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no probe report within {within:?}"))
        .expect("report channel open")
}

// ---------------------------------------------------------------------------------------------
// tcp + http
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_200_sends_host_headers_and_user_agent() {
    let cdn = http_cdn(CdnOptions::default()).await;
    let check = format!(
        "{}headers = {{ \"X-Probe-Token\" = \"abc123\" }}\n",
        http_check(cdn.addr(), "/health")
    );
    let r = run(&check).await;
    assert_eq!(
        outcomes(&r),
        [(Level::Tcp, Outcome::Ok), (Level::Http, Outcome::Ok)],
        "{r:#?}"
    );
    assert!(r.ok());
    assert_eq!(r.summary(), "ok");
    let http = level(&r, Level::Http);
    assert!(http.detail.contains("200"), "{}", http.detail);
    assert!(http.detail.contains("ttfb"), "{}", http.detail);
    assert!(
        level(&r, Level::Tcp)
            .detail
            .contains(&cdn.addr().to_string())
    );

    assert_eq!(cdn.hits(), 1);
    assert_eq!(cdn.last_host().as_deref(), Some("www.example.com"));
    assert_eq!(cdn.last_path().as_deref(), Some("/health"));
    assert_eq!(cdn.last_method().as_deref(), Some("GET"));
    assert_eq!(cdn.last_header("x-probe-token").as_deref(), Some("abc123"));
    let ua = cdn.last_header("user-agent").expect("a User-Agent is sent");
    assert!(ua.starts_with("steerd-probe/"), "User-Agent {ua:?}");

    // HEAD arrives as HEAD.
    let r = run(&format!(
        "{}method = \"HEAD\"\n",
        http_check(cdn.addr(), "/health")
    ))
    .await;
    assert!(r.ok(), "{r:#?}");
    assert_eq!(cdn.last_method().as_deref(), Some("HEAD"));

    // A User-Agent of the check replaces the default one (exactly one is sent).
    let r = run(&format!(
        "{}headers = {{ \"User-Agent\" = \"custom/1\" }}\n",
        http_check(cdn.addr(), "/")
    ))
    .await;
    assert!(r.ok(), "{r:#?}");
    let uas: Vec<String> = cdn
        .last_headers()
        .into_iter()
        .filter(|(k, _)| k == "user-agent")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(uas, ["custom/1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_port_goes_into_the_host_header() {
    let cdn = http_cdn(CdnOptions::default()).await;
    let check = format!(
        "url = \"http://www.example.com:8080/health\"\naddress = \"{}\"\n",
        cdn.addr()
    );
    let r = run(&check).await;
    assert!(r.ok(), "{r:#?}");
    assert_eq!(cdn.last_host().as_deref(), Some("www.example.com:8080"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_address_tcp_uses_the_targets_own_addresses() {
    let cdn = http_cdn(CdnOptions::default()).await;
    // Target "t" has a = ["127.0.0.1"]; no `address`, no dns level: connect there on `port`.
    let check = format!(
        "url = \"http://www.example.com/health\"\nport = {}\n",
        cdn.port()
    );
    assert_eq!(spec(&check).levels, [Level::Tcp, Level::Http]);
    let r = run(&check).await;
    assert!(r.ok(), "{r:#?}");
    assert_connected_to_port(&r, cdn.port());
    assert_eq!(cdn.hits(), 1);
}

// ---------------------------------------------------------------------------------------------
// tls
// ---------------------------------------------------------------------------------------------

fn expiry_days(detail: &str) -> i64 {
    let re = regex::Regex::new(r"expires in (-?\d+) d").unwrap();
    re.captures(detail)
        .unwrap_or_else(|| panic!("no days to expiry in {detail:?}"))[1]
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_ca_file_reports_sni_and_expiry() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = ca.write_pem(dir.path());
    let cdn = https_cdn(CdnOptions::default(), ca.leaf(&["www.example.com"], 90)).await;

    let r = run(&https_check(cdn.addr(), Some(&ca_path))).await;
    assert_eq!(
        outcomes(&r),
        [
            (Level::Tcp, Outcome::Ok),
            (Level::Tls, Outcome::Ok),
            (Level::Http, Outcome::Ok)
        ],
        "{r:#?}"
    );
    assert_eq!(cdn.last_sni().as_deref(), Some("www.example.com"));
    assert_eq!(cdn.last_host().as_deref(), Some("www.example.com"));
    assert_eq!(cdn.tls_handshakes(), 1);
    let tls = &level(&r, Level::Tls).detail;
    let days = expiry_days(tls);
    assert!((88..=90).contains(&days), "{days} days in {tls:?}");
    assert!(level(&r, Level::Http).detail.contains("200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_close_to_expiry_is_a_warning_not_a_failure() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = ca.write_pem(dir.path());
    let cdn = https_cdn(CdnOptions::default(), ca.leaf(&["www.example.com"], 5)).await;

    let check = format!(
        "{}cert_warning_days = 14\n",
        https_check(cdn.addr(), Some(&ca_path))
    );
    let r = run(&check).await;
    let tls = level(&r, Level::Tls);
    assert_eq!(tls.outcome, Outcome::Warn, "{r:#?}");
    assert!(
        (4..=5).contains(&expiry_days(&tls.detail)),
        "{}",
        tls.detail
    );
    assert!(tls.detail.contains("14"), "{}", tls.detail);
    assert_eq!(level(&r, Level::Http).outcome, Outcome::Ok, "{r:#?}");
    assert!(r.ok(), "a warning does not fail the run: {r:#?}");
    assert_eq!(r.summary(), "ok");

    // The same certificate with a 3-day threshold is simply ok.
    let check = format!(
        "{}cert_warning_days = 3\n",
        https_check(cdn.addr(), Some(&ca_path))
    );
    let r = run(&check).await;
    assert_eq!(level(&r, Level::Tls).outcome, Outcome::Ok, "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_fail_tls_and_stop_http() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = ca.write_pem(dir.path());

    let expect_tls_fail = |r: &RunResult, what: &str| {
        assert_eq!(
            outcomes(r),
            [
                (Level::Tcp, Outcome::Ok),
                (Level::Tls, Outcome::Fail),
                (Level::Http, Outcome::NotReached)
            ],
            "{what}: {r:#?}"
        );
        assert!(!r.ok());
        assert_eq!(fails(r), 1);
        level(r, Level::Tls).detail.to_ascii_lowercase()
    };

    // Expired.
    let expired = https_cdn(CdnOptions::default(), ca.leaf(&["www.example.com"], -1)).await;
    let r = run(&https_check(expired.addr(), Some(&ca_path))).await;
    let d = expect_tls_fail(&r, "expired");
    assert!(d.contains("expired"), "{d}");
    assert!(r.summary().starts_with("tls: "), "{}", r.summary());
    assert_eq!(expired.hits(), 0);

    // Certificate for another name.
    let wrong = https_cdn(CdnOptions::default(), ca.leaf(&["other.example.net"], 90)).await;
    let r = run(&https_check(wrong.addr(), Some(&ca_path))).await;
    let d = expect_tls_fail(&r, "wrong name");
    assert!(
        d.contains("not valid for name") && d.contains("www.example.com"),
        "{d}"
    );
    assert_eq!(wrong.last_sni().as_deref(), Some("www.example.com"));
    assert_eq!(wrong.hits(), 0);

    // Issued by a CA the prober does not trust (no ca_file: Mozilla roots only).
    let untrusted = https_cdn(CdnOptions::default(), ca.leaf(&["www.example.com"], 90)).await;
    let r = run(&https_check(untrusted.addr(), None)).await;
    let d = expect_tls_fail(&r, "untrusted");
    assert!(d.contains("unknownissuer") || d.contains("issuer"), "{d}");
    assert_eq!(untrusted.hits(), 0);

    // Trusting another test CA does not help either.
    let other_ca = TestCa::new();
    let other_dir = tempfile::tempdir().unwrap();
    let other_path = other_ca.write_pem(other_dir.path());
    let r = run(&https_check(untrusted.addr(), Some(&other_path))).await;
    expect_tls_fail(&r, "other CA");
}

// ---------------------------------------------------------------------------------------------
// tcp failures and timeouts
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_fails_tcp_and_nothing_above() {
    let addr = closed_port();
    // A long timeout (8 s): a refused connect must fail at once, not by timing out.
    let check = format!(
        "{}timeout = 8\n\n[targets.check.content]\ncontains = \"ok\"\n\n[targets.check.cache]\n",
        http_check(addr, "/health")
    );
    let r = run(&check).await;
    assert_eq!(
        outcomes(&r),
        [
            (Level::Tcp, Outcome::Fail),
            (Level::Http, Outcome::NotReached),
            (Level::Content, Outcome::NotReached),
            (Level::Cache, Outcome::NotReached)
        ],
        "{r:#?}"
    );
    let tcp = level(&r, Level::Tcp);
    assert!(tcp.detail.contains("connection refused"), "{}", tcp.detail);
    assert_eq!(fails(&r), 1, "exactly one failure: {r:#?}");
    assert_eq!(r.failure().map(|f| f.level), Some(Level::Tcp));
    assert!(r.summary().starts_with("tcp: "), "{}", r.summary());
    assert!(r.total < Duration::from_secs(3), "{:?}", r.total);

    // Only levels that ran become observations, plus the run's verdict.
    let obs = r.observations(&Arc::from("here"));
    let levels: Vec<(Level, bool)> = obs.iter().map(|o| (o.level, o.ok)).collect();
    assert_eq!(levels, [(Level::Tcp, false), (Level::Check, false)]);
    assert!(
        obs.iter()
            .all(|o| &*o.vantage == "here" && &*o.target == "t")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_hole_times_out_within_the_check_timeout() {
    let hole = blackhole().await;

    let check = format!("{}timeout = 0.5\n", http_check(hole.addr(), "/health"));
    let r = run(&check).await;
    eprintln!("black hole, http: total {:?}", r.total);
    assert_eq!(
        outcomes(&r),
        [(Level::Tcp, Outcome::Ok), (Level::Http, Outcome::Fail)],
        "{r:#?}"
    );
    assert_timed_out(&r, Level::Http);
    assert!(r.total >= Duration::from_millis(400), "{:?}", r.total);
    assert!(r.total < Duration::from_millis(3500), "{:?}", r.total);

    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = ca.write_pem(dir.path());
    let check = format!(
        "{}timeout = 0.5\n",
        https_check(hole.addr(), Some(&ca_path))
    );
    let r = run(&check).await;
    eprintln!("black hole, https: total {:?}", r.total);
    assert_eq!(
        outcomes(&r),
        [
            (Level::Tcp, Outcome::Ok),
            (Level::Tls, Outcome::Fail),
            (Level::Http, Outcome::NotReached)
        ],
        "{r:#?}"
    );
    assert_timed_out(&r, Level::Tls);
    assert!(r.total >= Duration::from_millis(400), "{:?}", r.total);
    assert!(r.total < Duration::from_millis(3500), "{:?}", r.total);
    assert_eq!(hole.connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_server_latency_and_timeout() {
    let slow = http_cdn(CdnOptions::default().delay(Duration::from_millis(300))).await;
    let check = format!("{}timeout = 2\n", http_check(slow.addr(), "/health"));
    let r = run(&check).await;
    assert!(r.ok(), "{r:#?}");
    let http = level(&r, Level::Http);
    assert!(
        http.latency >= Duration::from_millis(300),
        "{:?}",
        http.latency
    );
    assert!(r.total >= Duration::from_millis(300));

    // A server that would answer only after 10 s: the 0.5 s timeout ends the check long before.
    let slower = http_cdn(CdnOptions::default().delay(Duration::from_secs(10))).await;
    let check = format!("{}timeout = 0.5\n", http_check(slower.addr(), "/health"));
    let r = run(&check).await;
    assert_eq!(
        outcomes(&r),
        [(Level::Tcp, Outcome::Ok), (Level::Http, Outcome::Fail)],
        "{r:#?}"
    );
    assert_timed_out(&r, Level::Http);
    assert!(r.total < Duration::from_millis(3500), "{:?}", r.total);
    assert_eq!(slower.hits(), 1, "the request did arrive");
}

// ---------------------------------------------------------------------------------------------
// http status
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_503_fails_unless_expected() {
    let cdn = http_cdn(CdnOptions::default().status(503)).await;
    let base = http_check(cdn.addr(), "/health");

    let r = run(&base).await;
    let http = level(&r, Level::Http);
    assert_eq!(http.outcome, Outcome::Fail, "{r:#?}");
    assert!(http.detail.contains("503"), "{}", http.detail);
    assert!(http.detail.contains("expected 2xx"), "{}", http.detail);
    assert!(!r.ok());

    let r = run(&format!("{base}expect_status = [200, \"3xx\"]\n")).await;
    let http = level(&r, Level::Http);
    assert_eq!(http.outcome, Outcome::Fail, "{r:#?}");
    assert!(http.detail.contains("expected 200, 3xx"), "{}", http.detail);

    let r = run(&format!("{base}expect_status = [503]\n")).await;
    assert!(r.ok(), "{r:#?}");
    assert!(level(&r, Level::Http).detail.contains("503"));

    let r = run(&format!("{base}expect_status = [\"5xx\"]\n")).await;
    assert!(r.ok(), "{r:#?}");

    // 200 against a list that only accepts 503.
    let fine = http_cdn(CdnOptions::default()).await;
    let r = run(&format!(
        "{}expect_status = [503]\n",
        http_check(fine.addr(), "/health")
    ))
    .await;
    assert_eq!(level(&r, Level::Http).outcome, Outcome::Fail, "{r:#?}");
}

// ---------------------------------------------------------------------------------------------
// content
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_contains_sha256_regex_and_size_limit() {
    const BODY: &str = "hello steerd world\n";
    let cdn = http_cdn(CdnOptions::default().body(BODY)).await;
    let base = http_check(cdn.addr(), "/health");
    let with = |table: &str| format!("{base}\n[targets.check.content]\n{table}\n");
    let content = |r: &RunResult| {
        let c = level(r, Level::Content);
        (c.outcome, c.detail.clone())
    };

    let r = run(&with("contains = \"steerd\"")).await;
    assert_eq!(
        outcomes(&r),
        [
            (Level::Tcp, Outcome::Ok),
            (Level::Http, Outcome::Ok),
            (Level::Content, Outcome::Ok)
        ],
        "{r:#?}"
    );

    let r = run(&with("contains = \"maintenance\"")).await;
    let (o, d) = content(&r);
    assert_eq!(o, Outcome::Fail, "{r:#?}");
    assert!(d.contains("does not contain"), "{d}");
    assert_eq!(level(&r, Level::Http).outcome, Outcome::Ok);
    assert!(!r.ok());
    assert!(r.summary().starts_with("content: "), "{}", r.summary());

    let r = run(&with(&format!(
        "sha256 = \"{}\"",
        sha256_hex(BODY.as_bytes())
    )))
    .await;
    let (o, d) = content(&r);
    assert_eq!(o, Outcome::Ok, "{d}");

    let r = run(&with(&format!(
        "sha256 = \"{}\"",
        sha256_hex(b"hello steerd world")
    )))
    .await;
    let (o, d) = content(&r);
    assert_eq!(o, Outcome::Fail, "a digest without the newline: {d}");
    assert!(d.contains("differs"), "{d}");

    let r = run(&with("regex = '^hello [a-z]+ world\\n$'")).await;
    let (o, d) = content(&r);
    assert_eq!(o, Outcome::Ok, "{d}");

    let r = run(&with("regex = '^goodbye'")).await;
    let (o, d) = content(&r);
    assert_eq!(o, Outcome::Fail, "{d}");
    assert!(d.contains("does not match"), "{d}");

    // /big is 1 MiB of 'x'.
    let big = http_check(cdn.addr(), "/big");
    let r = run(&format!(
        "{big}\n[targets.check.content]\ncontains = \"xxx\"\nmax_bytes = 1000\n"
    ))
    .await;
    let (o, d) = content(&r);
    assert_eq!(o, Outcome::Fail, "{r:#?}");
    assert!(d.contains("larger than"), "{d}");
    assert_eq!(level(&r, Level::Http).outcome, Outcome::Ok, "{r:#?}");

    // Exactly at the default limit (1 MiB) still passes.
    let r = run(&format!(
        "{big}\n[targets.check.content]\nsha256 = \"{}\"\n",
        sha256_hex(&vec![b'x'; BIG_LEN])
    ))
    .await;
    let (o, d) = content(&r);
    assert_eq!(o, Outcome::Ok, "{d}");
}

// ---------------------------------------------------------------------------------------------
// cache
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_headers_are_read() {
    let with_cache = |cdn: &FakeCdn, cache_table: &str| {
        format!(
            "{}\n[targets.check.cache]\n{cache_table}\n",
            http_check(cdn.addr(), "/health")
        )
    };

    let hit = http_cdn(
        CdnOptions::default()
            .header("X-Cache", "HIT")
            .header("Age", "120")
            .header("X-Served-By", "cache-fra19120-FRA"),
    )
    .await;
    let r = run(&with_cache(&hit, "")).await;
    assert_eq!(
        outcomes(&r),
        [
            (Level::Tcp, Outcome::Ok),
            (Level::Http, Outcome::Ok),
            (Level::Cache, Outcome::Ok)
        ],
        "{r:#?}"
    );
    let obs = level(&r, Level::Cache)
        .cache
        .clone()
        .expect("a cache observation");
    assert_eq!(obs.status, CacheStatus::Hit);
    assert_eq!(obs.age, Some(120));
    assert_eq!(obs.pop.as_deref(), Some("cache-fra19120-FRA"));
    assert_eq!(hit.hits(), 1, "without a canary path, one request");
    // The run's verdict carries the cache observation to the health windows.
    let verdict = r
        .observations(&Arc::from("v"))
        .into_iter()
        .find(|o| o.level == Level::Check)
        .unwrap();
    assert_eq!(verdict.cache.map(|c| c.status), Some(CacheStatus::Hit));

    let miss = http_cdn(CdnOptions::default().header("CF-Cache-Status", "MISS")).await;
    let r = run(&with_cache(&miss, "")).await;
    let cache = level(&r, Level::Cache);
    assert_eq!(cache.outcome, Outcome::Ok, "a MISS is not a failure");
    assert_eq!(
        cache.cache.as_ref().map(|c| c.status),
        Some(CacheStatus::Miss),
        "{r:#?}"
    );

    let plain = http_cdn(CdnOptions::default()).await;
    let r = run(&with_cache(&plain, "")).await;
    let cache = level(&r, Level::Cache);
    assert_eq!(cache.outcome, Outcome::Ok, "{r:#?}");
    assert!(cache.cache.is_none(), "{r:#?}");

    // A canary object, fetched on the same connection after the http level.
    let r = run(&with_cache(&hit, "path = \"/canary.txt\"")).await;
    assert!(r.ok(), "{r:#?}");
    assert_eq!(hit.last_path().as_deref(), Some("/canary.txt"));
    assert_eq!(hit.hits(), 3, "one more http request and the canary");
    assert_eq!(hit.connections(), 2, "one connection per run");
    assert_eq!(
        level(&r, Level::Cache).cache.as_ref().map(|c| c.status),
        Some(CacheStatus::Hit)
    );
}

// ---------------------------------------------------------------------------------------------
// dns
// ---------------------------------------------------------------------------------------------

/// A steerd serving the zone cdn.test: edge (A 127.0.0.1).
fn dns_zone() -> String {
    format!(
        "\n{NO_GEODB}{}{}",
        zone_ns1("cdn.test", "127.0.0.1"),
        record("edge", "A", "127.0.0.1")
    )
}

fn dns_check(resolver: SocketAddr, host: &str, port: u16, timeout: f64) -> String {
    format!(
        "host = \"{host}\"\nport = {port}\nurl = \"http://www.example.com/health\"\nresolvers = [\"{resolver}\"]\ntimeout = {timeout}\n"
    )
}

#[test]
fn dns_level_against_a_real_authoritative_server() {
    let dns = TestServer::start(&dns_zone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cdn = http_cdn(CdnOptions::default()).await;

        // A name with an A record: dns ok, and tcp connects to the address found.
        let r = run(&dns_check(dns.udp, "edge.cdn.test", cdn.port(), 2.0)).await;
        assert_eq!(
            outcomes(&r),
            [
                (Level::Dns, Outcome::Ok),
                (Level::Tcp, Outcome::Ok),
                (Level::Http, Outcome::Ok)
            ],
            "{r:#?}"
        );
        let d = &level(&r, Level::Dns).detail;
        assert!(d.contains("127.0.0.1"), "{d}");
        assert_connected_to_port(&r, cdn.port());
        assert_eq!(cdn.hits(), 1);
        assert_eq!(cdn.last_host().as_deref(), Some("www.example.com"));

        // A name that does not exist.
        let r = run(&dns_check(dns.udp, "nope.cdn.test", cdn.port(), 2.0)).await;
        assert_eq!(outcomes(&r), DNS_FAILED, "{r:#?}");
        let d = &level(&r, Level::Dns).detail;
        assert!(d.contains("NXDOMAIN"), "{d}");
        assert_eq!(cdn.hits(), 1);

        // The target's cname is what the dns level resolves when `host` is not set.
        let cfg = config(&format!(
            "\n[[targets]]\nname = \"c\"\ncname = \"edge.cdn.test\"\n\n[targets.check]\nport = {}\nurl = \"http://www.example.com/\"\nresolvers = [\"{}\"]\n",
            cdn.port(),
            dns.udp
        ));
        let spec = cfg.targets[0].check.clone().unwrap();
        assert_eq!(spec.levels, [Level::Dns, Level::Tcp, Level::Http]);
        let r = Checker::new().run(&Arc::from("c"), &spec).await;
        assert!(r.ok(), "{r:#?}");
        assert_eq!(cdn.hits(), 2);

        // A resolver that does not answer (nothing on that port): dns fails within the timeout.
        let dead = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let r = run(&dns_check(dead, "edge.cdn.test", cdn.port(), 0.5)).await;
        eprintln!(
            "dead resolver: {:?} after {:?}",
            level(&r, Level::Dns).detail,
            r.total
        );
        assert_eq!(outcomes(&r), DNS_FAILED, "{r:#?}");
        assert!(r.total < Duration::from_millis(3500), "{:?}", r.total);
        assert_eq!(cdn.hits(), 2);
    });
    drop(rt);
    drop(dns);
}

// ---------------------------------------------------------------------------------------------
// The scheduler: confirmation bursts in real time
// ---------------------------------------------------------------------------------------------

/// (kind, passed, confirmed down) of each report.
fn kinds(reports: &[(Duration, ProbeReport)]) -> Vec<(RunKind, bool, bool)> {
    reports
        .iter()
        .map(|(_, r)| (r.kind, r.run.ok(), r.confirmed_down))
        .collect()
}

/// A failed scheduled check, then three failed re-checks, the last confirming it down.
const CONFIRMED_DOWN: [(RunKind, bool, bool); 4] = [
    (RunKind::Scheduled, false, false),
    (RunKind::Confirm { n: 1, of: 3 }, false, false),
    (RunKind::Confirm { n: 2, of: 3 }, false, false),
    (RunKind::Confirm { n: 3, of: 3 }, false, true),
];

/// Interval-driven detection (the kept-connection watch is off; see the watch tests).
fn scheduled_check(addr: SocketAddr, interval: f64, confirm_gap: f64) -> String {
    format!(
        "{}interval = {interval}\ntimeout = 0.5\njitter = 0\nconfirm = 3\nconfirm_gap = {confirm_gap}\nwatch = false\n",
        http_check(addr, "/health")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_burst_confirms_a_dead_target_fast() {
    let cdn = http_cdn(CdnOptions::default()).await;
    // A 5 s interval: re-checks spaced by the interval would take 15 s, and a missed scheduled
    // check would put the first failure 10 s after the kill; the bounds below sit well under both.
    let cfg = config(&target("burst", &scheduled_check(cdn.addr(), 5.0, 0.1)));
    let plan = ProbePlan::from_config(&cfg);
    assert_eq!(plan.jobs.len(), 1);
    let (tx, mut rx) = mpsc::channel(64);
    let prober = Prober::start(plan, tx).unwrap();
    // The checks are running when `start` returns.
    assert_eq!(prober.running(), ["burst"]);

    // The first check runs within about a second (the start spread of a lone new target).
    let first = next_report(&mut rx, Duration::from_secs(5)).await;
    assert!(first.run.ok(), "{:#?}", first.run);
    assert_eq!(first.kind, RunKind::Scheduled);
    assert!(!first.confirmed_down);
    assert_eq!(&*first.vantage, "local");
    assert_eq!(&*first.run.target, "burst");

    let killed = Instant::now();
    cdn.kill().await;
    let mut after: Vec<(Duration, ProbeReport)> = Vec::new();
    loop {
        // The first failure comes with the next scheduled check, up to one interval away.
        let r = next_report(&mut rx, Duration::from_secs(8)).await;
        let done = r.confirmed_down;
        after.push((killed.elapsed(), r));
        if done || after.len() > 10 {
            break;
        }
    }
    tokio::task::block_in_place(|| prober.stop());

    assert_eq!(kinds(&after), CONFIRMED_DOWN, "reports after the kill");
    for (_, r) in &after {
        assert_eq!(r.run.failure().map(|f| f.level), Some(Level::Tcp));
    }
    let first_failure = after[0].0;
    let confirmed = after[3].0;
    eprintln!(
        "kill → first failure {first_failure:?}; first failure → confirmed {:?}; kill → confirmed {confirmed:?}",
        confirmed - first_failure
    );
    assert!(
        confirmed - first_failure < Duration::from_secs(3),
        "burst took {:?}",
        confirmed - first_failure
    );
    assert!(
        confirmed - first_failure >= Duration::from_millis(250),
        "three re-checks 0.1 s apart: {:?}",
        confirmed - first_failure
    );
    // One interval (5 s) for the next scheduled check, then the burst.
    assert!(
        confirmed < Duration::from_secs(8),
        "kill → confirmed {confirmed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failure_is_not_confirmed() {
    let cdn = http_cdn(CdnOptions::default()).await;
    let addr = cdn.addr();
    // Re-checks 2.5 s apart, just under the 3 s interval: the test has 2.5 s after the failure
    // report to bring the CDN back before the first re-check.
    let cfg = config(&target("blip", &scheduled_check(addr, 3.0, 2.5)));
    let (tx, mut rx) = mpsc::channel(64);
    let prober = Prober::start(ProbePlan::from_config(&cfg), tx).unwrap();

    let first = next_report(&mut rx, Duration::from_secs(5)).await;
    assert!(first.run.ok(), "{:#?}", first.run);

    // Down for one scheduled check...
    cdn.kill().await;
    let fail = next_report(&mut rx, Duration::from_secs(6)).await;
    assert_eq!(fail.kind, RunKind::Scheduled);
    assert!(!fail.run.ok(), "{:#?}", fail.run);
    assert!(!fail.confirmed_down);
    // ...and back before the first re-check (2.5 s later).
    let back = http_cdn_on(addr, CdnOptions::default()).await;
    let t_back = Instant::now();

    let recheck = next_report(&mut rx, Duration::from_secs(6)).await;
    eprintln!(
        "transient: restarted {:?} before the re-check",
        t_back.elapsed()
    );
    assert_eq!(recheck.kind, RunKind::Confirm { n: 1, of: 3 });
    assert!(recheck.run.ok(), "{:#?}", recheck.run);
    assert!(!recheck.confirmed_down);

    // One success ends the burst: the next report is a scheduled one, and ok.
    let next = next_report(&mut rx, Duration::from_secs(6)).await;
    assert_eq!(next.kind, RunKind::Scheduled, "{next:#?}");
    assert!(next.run.ok());
    assert!(!next.confirmed_down);
    assert!(back.hits() >= 2);
    tokio::task::block_in_place(|| prober.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_zero_confirms_the_first_failure() {
    let addr = closed_port();
    let check = format!(
        "{}interval = 1\ntimeout = 0.5\njitter = 0\nconfirm = 0\n",
        http_check(addr, "/health")
    );
    let cfg = config(&target("now", &check));
    let (tx, mut rx) = mpsc::channel(64);
    let prober = Prober::start(ProbePlan::from_config(&cfg), tx).unwrap();
    let r = next_report(&mut rx, Duration::from_secs(5)).await;
    tokio::task::block_in_place(|| prober.stop());
    assert_eq!(r.kind, RunKind::Scheduled);
    assert!(!r.run.ok());
    assert!(r.confirmed_down);
}

// ---------------------------------------------------------------------------------------------
// Hot configuration through Server
// ---------------------------------------------------------------------------------------------

fn server_config(check: Option<&str>) -> ValidConfig {
    let t = match check {
        Some(c) => target("cdn-a", c),
        None => "\n[[targets]]\nname = \"cdn-a\"\na = [\"127.0.0.1\"]\n".to_string(),
    };
    let mut cfg = config(&t);
    cfg.server.dns_listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.server.udp_sockets = 2;
    cfg.geo.database = None;
    cfg
}

fn server_check(addr: SocketAddr, path: &str) -> String {
    format!(
        "{}interval = 1\ntimeout = 0.5\njitter = 0\n",
        http_check(addr, path)
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_config_starts_stops_and_retargets_checks() {
    let a = http_cdn(CdnOptions::default()).await;
    let b = http_cdn(CdnOptions::default()).await;
    let mut server = steerd::Server::start(server_config(Some(&server_check(a.addr(), "/health"))))
        .await
        .expect("server starts");
    assert_eq!(server.probing(), ["cdn-a"]);
    assert!(
        eventually(Duration::from_secs(1), || server.probing() == ["cdn-a"]).await,
        "probing: {:?}",
        server.probing()
    );

    // The check runs and its observations reach the health store.
    assert!(
        eventually(Duration::from_secs(3), || a.hits() >= 1).await,
        "A is probed"
    );
    let health = server.health().clone();
    let counted = eventually(Duration::from_secs(2), || {
        let mut h = health.lock();
        h.target("cdn-a").is_some_and(|t| {
            let s = t.stats(Level::Check, now_ms(), Win::M1);
            s.count > 0 && s.failures == 0
        })
    })
    .await;
    assert!(
        counted,
        "check observations in the health store: {:?}",
        health.lock()
    );
    {
        let mut h = health.lock();
        let t = h.target("cdn-a").unwrap();
        assert!(t.stats(Level::Http, now_ms(), Win::M1).count > 0);
        assert!(t.last_from(Level::Check, "local").is_some_and(|o| o.ok));
    }

    // Remove the check: stopped before apply returns; A hears nothing more.
    tokio::task::block_in_place(|| server.apply(server_config(None))).unwrap();
    assert!(server.probing().is_empty(), "{:?}", server.probing());
    // Let a request already on the wire land before taking the count: wait until A's count
    // has held still for 300 ms (a running check, every second, would not stay quiet 2.5 s).
    let mut a_hits = a.hits();
    let mut still_since = Instant::now();
    let settle_by = still_since + Duration::from_secs(3);
    while still_since.elapsed() < Duration::from_millis(300) {
        assert!(
            Instant::now() < settle_by,
            "A's request count never settled ({})",
            a.hits()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let h = a.hits();
        if h != a_hits {
            a_hits = h;
            still_since = Instant::now();
        }
    }
    let quiet = Instant::now();
    let grew = eventually(Duration::from_millis(2500), || a.hits() != a_hits).await;
    assert!(
        !grew,
        "A was probed after its check was removed ({a_hits} → {})",
        a.hits()
    );
    eprintln!("A stayed quiet for {:?}", quiet.elapsed());

    // A check against B: B is probed, A is not.
    tokio::task::block_in_place(|| {
        server.apply(server_config(Some(&server_check(b.addr(), "/health"))))
    })
    .unwrap();
    assert_eq!(server.probing(), ["cdn-a"]);
    assert!(
        eventually(Duration::from_secs(3), || b.hits() >= 1).await,
        "B is probed"
    );
    assert_eq!(b.last_path().as_deref(), Some("/health"));
    assert_eq!(a.hits(), a_hits, "A is no longer probed");

    // Only the URL's path changes: the new path is requested.
    tokio::task::block_in_place(|| {
        server.apply(server_config(Some(&server_check(b.addr(), "/v2/ping"))))
    })
    .unwrap();
    assert!(
        eventually(Duration::from_secs(3), || b.last_path().as_deref()
            == Some("/v2/ping"))
        .await,
        "the new path is probed (last path {:?})",
        b.last_path()
    );
    assert_eq!(a.hits(), a_hits);

    server.shutdown().await;
}

/// A long interval: only the kept connection's closing can trigger a check soon.
fn watched_check(addr: SocketAddr, watch: bool) -> String {
    format!(
        "{}interval = 30\ntimeout = 0.5\njitter = 0\nconfirm = 3\nconfirm_gap = 0.1\nwatch = {watch}\n",
        http_check(addr, "/health")
    )
}

/// Start a prober on one target and wait for its first (passing) check: a lone new target is
/// first checked within about a second, whatever its interval (5 s allowed for a loaded host).
async fn first_ok(check: &str) -> (Prober, mpsc::Receiver<ProbeReport>) {
    let cfg = config(&target("w", check));
    let (tx, mut rx) = mpsc::channel(64);
    let prober = Prober::start(ProbePlan::from_config(&cfg), tx).unwrap();
    let r = next_report(&mut rx, Duration::from_secs(5)).await;
    assert!(r.run.ok(), "{:#?}", r.run);
    assert_eq!(r.kind, RunKind::Scheduled);
    (prober, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_connection_closing_triggers_a_check_at_once() {
    let cdn = http_cdn(CdnOptions::default()).await;
    let (prober, mut rx) = first_ok(&watched_check(cdn.addr(), true)).await;
    // A connection closing within 1 s of its check triggers a check 1 s after it (edges that
    // drop idle connections at once must not cause a storm): let it age.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let killed = Instant::now();
    cdn.kill().await;
    let mut reports = Vec::new();
    loop {
        let r = next_report(&mut rx, Duration::from_secs(5)).await;
        let done = r.confirmed_down;
        reports.push((killed.elapsed(), r.kind, r.run.ok()));
        if done || reports.len() > 6 {
            break;
        }
    }
    tokio::task::block_in_place(|| prober.stop());
    let kinds: Vec<_> = reports.iter().map(|(_, k, ok)| (*k, *ok)).collect();
    assert_eq!(
        kinds,
        [
            (RunKind::Scheduled, false),
            (RunKind::Confirm { n: 1, of: 3 }, false),
            (RunKind::Confirm { n: 2, of: 3 }, false),
            (RunKind::Confirm { n: 3, of: 3 }, false),
        ]
    );
    let (first, confirmed) = (reports[0].0, reports[3].0);
    eprintln!("watched: kill → first failure {first:?}, kill → confirmed {confirmed:?}");
    // The interval is 30 s: only the watch can explain a check this soon (expected at once;
    // the bounds leave room for a loaded host).
    assert!(
        first < Duration::from_secs(3),
        "kill → first failure {first:?}"
    );
    assert!(
        confirmed < Duration::from_secs(5),
        "kill → confirmed {confirmed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_watch_a_kill_waits_for_the_interval() {
    let cdn = http_cdn(CdnOptions::default()).await;
    let (prober, mut rx) = first_ok(&watched_check(cdn.addr(), false)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    cdn.kill().await;
    let r = tokio::time::timeout(Duration::from_millis(1500), rx.recv()).await;
    tokio::task::block_in_place(|| prober.stop());
    assert!(
        r.is_err(),
        "a check ran although nothing asked for one: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_closing_connections_does_not_cause_a_check_storm() {
    // Every response says "Connection: close": the prober must not watch such a connection
    // (nor re-check each time an edge drops an idle connection within 1 s).
    let cdn = http_cdn(CdnOptions::default().header("Connection", "close")).await;
    let (prober, mut rx) = first_ok(&watched_check(cdn.addr(), true)).await;
    let hits = cdn.hits();
    let r = tokio::time::timeout(Duration::from_millis(2500), rx.recv()).await;
    tokio::task::block_in_place(|| prober.stop());
    assert!(r.is_err(), "extra check: {r:?}");
    assert_eq!(cdn.hits(), hits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_right_after_a_check_is_still_seen_by_the_watch() {
    let cdn = http_cdn(CdnOptions::default()).await;
    let (prober, mut rx) = first_ok(&watched_check(cdn.addr(), true)).await;
    let killed = Instant::now();
    cdn.kill().await;
    let r = next_report(&mut rx, Duration::from_secs(5)).await;
    let first = killed.elapsed();
    tokio::task::block_in_place(|| prober.stop());
    assert!(!r.run.ok());
    eprintln!("young watch: kill → first failure {first:?}");
    // A connection closing young is checked 1 s after its check (about 1 s after the kill); the
    // interval is 30 s, so a failure within 3 s can only come from the watch.
    assert!(
        first < Duration::from_secs(3),
        "kill → first failure {first:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Hung edges: connections open, nothing answered
// ---------------------------------------------------------------------------------------------

/// Reports from now until one confirms the target down (at most `max` reports, each within
/// `within`), with the time each arrived since `t0`.
async fn until_confirmed(
    rx: &mut mpsc::Receiver<ProbeReport>,
    t0: Instant,
    within: Duration,
) -> Vec<(Duration, ProbeReport)> {
    let mut out = Vec::new();
    loop {
        let r = next_report(rx, within).await;
        let done = r.confirmed_down;
        out.push((t0.elapsed(), r));
        if done || out.len() > 8 {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_edge_is_confirmed_down_within_a_few_seconds() {
    // The default settings (interval 10 s, timeout 2 s, confirm 3 × 0.1 s, watch, heartbeat
    // 1 s). The edge hangs right after a passing check: the next check is about 10 s away, so
    // before heartbeats it took that interval plus a 2 s timeout plus three re-checks of 2 s
    // each (≥ 17 s); a heartbeat finds it within a second and confirmation needs one timeout.
    let cdn = http_cdn(CdnOptions::default()).await;
    let (prober, mut rx) = first_ok(&http_check(cdn.addr(), "/health")).await;
    let hung = Instant::now();
    cdn.hang();
    let reports = until_confirmed(&mut rx, hung, Duration::from_secs(25)).await;
    tokio::task::block_in_place(|| prober.stop());
    assert_eq!(kinds(&reports), CONFIRMED_DOWN, "{reports:#?}");
    let confirmed = reports[3].0;
    eprintln!("hung edge: hang → confirmed down {confirmed:?}");
    assert!(
        confirmed < Duration::from_secs(8),
        "hang → confirmed {confirmed:?}"
    );
    // The first failure is the heartbeat on the kept connection; the re-checks, on fresh
    // connections, got no answer either.
    let first = reports[0].1.run.failure().expect("a failure");
    assert_eq!(first.level, Level::Http);
    assert!(first.detail.contains("heartbeat"), "{}", first.detail);
    for (_, r) in &reports[1..] {
        let f = r.run.failure().expect("a failure");
        assert_eq!(f.level, Level::Http, "{:#?}", r.run);
        assert!(f.detail.contains("timed out"), "{}", f.detail);
    }
    cdn.resume();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_edge_without_watch_is_confirmed_one_timeout_after_the_check() {
    // No kept connection, so no heartbeat: the next scheduled check finds the hang. Its
    // re-checks start while it waits out its 2 s timeout and end with it, where they used to
    // run one after another, 2 s each (6.3 s).
    let cdn = http_cdn(CdnOptions::default()).await;
    let check = format!(
        "{}interval = 5\njitter = 0\nwatch = false\n",
        http_check(cdn.addr(), "/health")
    );
    let (prober, mut rx) = first_ok(&check).await;
    cdn.hang();
    let t0 = Instant::now();
    let reports = until_confirmed(&mut rx, t0, Duration::from_secs(12)).await;
    tokio::task::block_in_place(|| prober.stop());
    let kinds: Vec<(RunKind, bool)> = reports
        .iter()
        .map(|(_, r)| (r.kind, r.confirmed_down))
        .collect();
    assert_eq!(
        kinds,
        [
            (RunKind::Scheduled, false),
            (RunKind::Confirm { n: 1, of: 3 }, false),
            (RunKind::Confirm { n: 2, of: 3 }, false),
            (RunKind::Confirm { n: 3, of: 3 }, true),
        ],
        "{reports:#?}"
    );
    let first = &reports[0].1.run;
    assert!(
        first
            .failure()
            .is_some_and(|f| f.detail.contains("check timeout 2.0 s")),
        "{first:#?}"
    );
    let burst = reports[3].0 - reports[0].0;
    eprintln!("hung edge, no watch: first failure → confirmed {burst:?}");
    assert!(
        burst < Duration::from_secs(3),
        "first failure → confirmed {burst:?}"
    );
    cdn.resume();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_but_answering_edge_is_not_confirmed_down() {
    // Usually 200 ms. Then 1.5× that, then 5× (1 s: past the point where re-checks start, still
    // inside the 1.5 s timeout). Every check and heartbeat is answered within the timeout, so
    // nothing fails and nothing is confirmed down.
    let cdn = http_cdn(CdnOptions::default().delay(Duration::from_millis(200))).await;
    let check = format!(
        "{}interval = 3\ntimeout = 1.5\njitter = 0\nheartbeat = 1\n",
        http_check(cdn.addr(), "/health")
    );
    let (prober, mut rx) = first_ok(&check).await;
    for delay in [300, 1000] {
        cdn.set_delay(Duration::from_millis(delay));
        // Two scheduled checks at this latency, with heartbeats between them.
        let hits = cdn.hits();
        let mut passed = 0;
        while passed < 2 {
            let r = next_report(&mut rx, Duration::from_secs(10)).await;
            assert!(
                r.run.ok() && !r.confirmed_down && r.kind == RunKind::Scheduled,
                "at {delay} ms: {r:#?}"
            );
            passed += 1;
        }
        assert!(
            cdn.hits() >= hits + 4,
            "heartbeats were sent ({} → {})",
            hits,
            cdn.hits()
        );
    }
    tokio::task::block_in_place(|| prober.stop());
}
