//! The `steerd` binary: --version, check-config, serve with SIGHUP reload and graceful SIGTERM.

mod common;

use std::io::BufRead;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{DEMO, query, raw_udp};
use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};

const BIN: &str = env!("CARGO_BIN_EXE_steerd");

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The demo configuration without its health checks: the demo's CDNs (127.0.0.1:8081/8082) are
/// not running here, and probing them would move `assets` from cdn-a to cdn-b within a second of
/// start, racing the test's first look.
fn demo_without_checks() -> String {
    let mut skip = false;
    let mut out = String::new();
    for line in DEMO.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            skip = t.starts_with("[targets.check");
        }
        if !skip {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(!out.contains("[targets.check"), "{out}");
    out
}

/// Collects a child's stderr lines on a thread of its own, so a test can wait for a log line.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn new(child: &mut Child) -> Lines {
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Wait (up to 20 s) for a line containing `what`.
    fn wait_for(&mut self, what: &str) {
        if self.seen.iter().any(|l| l.contains(what)) {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(what);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no log line with {what:?} within 20 s:\n{}",
            self.seen.join("\n")
        );
    }

    /// Every line, once the child has exited (its stderr closed).
    fn all(mut self) -> Vec<String> {
        while let Ok(line) = self.rx.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line);
        }
        self.seen
    }
}

fn assets_answer(addr: SocketAddr) -> Option<String> {
    let q = query("assets.example.com.", RecordType::A, None);
    let resp = raw_udp(addr, &q.to_vec().unwrap(), Duration::from_millis(300))?;
    let m = Message::from_vec(&resp).ok()?;
    match &m.answers.first()?.data {
        RData::CNAME(c) => Some(c.0.to_ascii()),
        _ => None,
    }
}

/// Wait until `addr` answers `want`; Err if steerd exited first.
fn try_wait_for(addr: SocketAddr, want: &str, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("steerd exited early: {status}"));
        }
        if assets_answer(addr).as_deref() == Some(want) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("steerd did not answer {want} within 20 s");
}

fn wait_for(addr: SocketAddr, want: &str, child: &mut Child) {
    try_wait_for(addr, want, child).unwrap()
}

/// `steerd serve` on `cfg` (JSON logs on a piped stderr, the admin API on a free port), once it
/// answers assets with cdn-a: the child and its DNS address. The free UDP port may be taken for
/// TCP by another socket: try a few ports.
fn serve(cfg: &Path) -> (Child, SocketAddr) {
    let mut attempt = 0;
    loop {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut child = Command::new(BIN)
            .args(["--log-format", "json", "serve", "--config"])
            .arg(cfg)
            .args(["--dns-listen", &addr.to_string()])
            .args(["--admin-listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        match try_wait_for(addr, "example.global.cdn-a.net.", &mut child) {
            Ok(()) => return (child, addr),
            Err(e) if attempt < 4 => {
                attempt += 1;
                eprintln!("{e}; retrying on another port");
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

#[test]
fn version_prints_the_crate_version() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("steerd {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_accepts_the_demo_and_names_file_line_and_field_on_errors() {
    let out = Command::new(BIN)
        .args(["check-config", "config/steerd.toml"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("OK") && stdout.contains("4 service(s)"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, DEMO.replace("weight = 40", "weight = -2")).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = DEMO
        .lines()
        .position(|l| l.contains("weight = 40"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(
            "bad.toml:{line}: services[0].geo.default[1].weight: weight must be greater than 0 (got -2)"
        )),
        "{err}"
    );

    let out = Command::new(BIN)
        .args(["check-config", "does/not/exist.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does/not/exist.toml: cannot read file"));
}

#[test]
fn serve_reloads_on_sighup_keeps_last_good_config_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("steerd.toml");
    let demo = demo_without_checks();
    std::fs::write(&cfg, &demo).unwrap();
    let (mut child, addr) = serve(&cfg);

    let mut log = Lines::new(&mut child);

    // A changed file is applied on SIGHUP.
    let changed = demo.replace(
        "targets = [{ target = \"cdn-a\" }, { target = \"cdn-b\" }, { target = \"origin\" }]",
        "targets = [{ target = \"cdn-b\" }]",
    );
    assert_ne!(changed, demo);
    std::fs::write(&cfg, changed).unwrap();
    signal(&child, "-HUP");
    wait_for(addr, "example.b-cdn.example.net.", &mut child);

    // A broken file is rejected; the last good configuration keeps answering.
    std::fs::write(&cfg, "this is not toml [").unwrap();
    signal(&child, "-HUP");
    log.wait_for("reload rejected");
    assert_eq!(
        assets_answer(addr).as_deref(),
        Some("example.b-cdn.example.net.")
    );

    signal(&child, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "steerd did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "graceful exit: {status}");
    let lines = log.all();
    let stderr = lines.join("\n");
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(l.starts_with('{') && l.ends_with('}'), "JSON log line: {l}");
    }
    assert!(stderr.contains("reload rejected"), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
}

fn resolve(client: &str, name: &str) -> String {
    let out = Command::new(BIN)
        .args([
            "resolve",
            "--config",
            "config/steerd.toml",
            "--client",
            client,
            name,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn scope_of(out: &str) -> u8 {
    let line = out
        .lines()
        .find(|l| l.starts_with("ecs scope: /"))
        .expect(out);
    line["ecs scope: /".len()..].parse().unwrap()
}

#[test]
fn resolve_shows_answer_location_and_scope_with_the_shipped_database() {
    let eu = resolve("81.2.69.160/24", "www.example.com");
    assert!(
        eu.contains("country GB, continent EU (located by ECS, source: database)"),
        "{eu}"
    );
    assert!(eu.contains("CNAME example.b-cdn.example.net."), "{eu}");
    assert!(eu.contains("→ target cdn-b"), "{eu}");
    assert!(scope_of(&eu) < 24, "merged block wider than the /24: {eu}");

    let na = resolve("8.8.8.0/24", "www.example.com");
    assert!(na.contains("continent NA (located by ECS"), "{na}");
    assert!(na.contains("CNAME example.global.cdn-a.net."), "{na}");

    let resolver = resolve("8.8.8.8", "www.example.com");
    assert!(resolver.contains("located by resolver"), "{resolver}");
    assert!(resolver.contains("ecs scope: - (no ECS"), "{resolver}");

    // Static data does not depend on the client: scope 0.
    let st = resolve("81.2.69.0/24", "static.example.com");
    assert_eq!(scope_of(&st), 0, "{st}");

    let bad = Command::new(BIN)
        .args(["resolve", "--client", "300.1.1.1", "www.example.com"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an IP address"));
}

/// The geography issue's acceptance check: dig +subnet against the default configuration.
#[test]
fn dig_subnet_against_the_default_config_gets_european_and_american_answers() {
    let srv = common::TestServer::start_with(DEMO, |c| {
        c.geo.database = Some("geodb/geo-whois-asn-country.mmdb".into());
    });
    let eu = common::dig(srv.udp, &["www.example.com", "+subnet=81.2.69.0/24"]);
    assert!(eu.contains("CNAME\texample.b-cdn.example.net."), "{eu}");
    let scope_line = eu
        .lines()
        .find(|l| l.contains("CLIENT-SUBNET: 81.2.69.0/24/"))
        .unwrap_or_else(|| panic!("ECS echoed: {eu}"));
    let scope: u8 = scope_line
        .rsplit('/')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(scope < 24 && scope > 0, "scope /{scope} wider than /24");
    let na = common::dig(srv.udp, &["www.example.com", "+subnet=8.8.8.0/24"]);
    assert!(na.contains("CNAME\texample.global.cdn-a.net."), "{na}");
    // Same over TCP (the hickory path).
    let eu_tcp = common::dig(
        srv.tcp,
        &["+tcp", "www.example.com", "+subnet=81.2.69.0/24"],
    );
    assert!(eu_tcp.contains(scope_line.trim()), "{eu_tcp}");
}

// ---------------------------------------------------------------------------------------------
// Issue 12: what `check-config` and `serve` refuse, and where their errors point.

/// `steerd ARGS` run in `cwd`: (success, stdout, stderr).
fn steerd_in(cwd: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The 1-based line of `text` holding `needle`.
fn line_with(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn check_config_and_serve_refuse_a_configuration_without_zones_unless_it_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let file = empty.to_str().unwrap();
    let (ok, _, err) = steerd_in(dir.path(), &["check-config", file]);
    assert!(!ok, "an empty file is refused: {err}");
    assert!(err.contains(&format!("{file}: zones: no zone")), "{err}");
    assert!(err.contains("allow_no_zones = true"), "{err}");
    let (ok, _, err) = steerd_in(
        dir.path(),
        &["serve", "--config", file, "--dns-listen", "127.0.0.1:0"],
    );
    assert!(!ok, "serve refuses it too: {err}");
    assert!(err.contains(&format!("{file}: zones: no zone")), "{err}");

    std::fs::write(
        &empty,
        "allow_no_zones = true  # zones come through the API\n",
    )
    .unwrap();
    let (ok, out, err) = steerd_in(dir.path(), &["check-config", file]);
    assert!(ok, "said so: {err}");
    assert!(out.contains("OK: 0 zone(s)"), "{out}");
}

#[test]
fn check_config_opens_the_geo_files_serve_opens() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("steerd.toml");
    let file = cfg.to_str().unwrap();
    let with_geo = |geo: &str| {
        let text =
            demo_without_checks().replace("database = \"geodb/geo-whois-asn-country.mmdb\"", geo);
        std::fs::write(&cfg, &text).unwrap();
        text
    };

    // A database that is not there (relative: beside the configuration).
    let text = with_geo("database = \"missing.mmdb\"");
    let (ok, out, err) = steerd_in(env!("CARGO_MANIFEST_DIR").as_ref(), &["check-config", file]);
    assert!(!ok, "check-config accepted a missing database: {out}");
    let line = line_with(&text, "missing.mmdb");
    let want = format!(
        "{file}:{line}: geo.database: {}",
        dir.path().join("missing.mmdb").display()
    );
    assert!(err.contains(&want), "want {want:?} in:\n{err}");

    // A file that is not a MaxMind database.
    std::fs::write(dir.path().join("junk.mmdb"), b"not a database").unwrap();
    let text = with_geo("database = \"junk.mmdb\"");
    let (ok, _, err) = steerd_in(env!("CARGO_MANIFEST_DIR").as_ref(), &["check-config", file]);
    assert!(!ok);
    let line = line_with(&text, "junk.mmdb");
    assert!(
        err.contains(&format!("{file}:{line}: geo.database: ")),
        "{err}"
    );

    // A nets file with a bad entry: its own file and line in the reason.
    std::fs::write(
        dir.path().join("nets.toml"),
        "[[nets]]\ncidr = \"192.0.2.0/24\"\ncountry = \"DE\"\n\n[[nets]]\ncidr = \"not a net\"\ncountry = \"DE\"\n",
    )
    .unwrap();
    let text = with_geo("database = \"\"\nnets_file = \"nets.toml\"");
    let (ok, _, err) = steerd_in(env!("CARGO_MANIFEST_DIR").as_ref(), &["check-config", file]);
    assert!(!ok);
    let line = line_with(&text, "nets_file");
    let nets = dir.path().join("nets.toml");
    let want = format!(
        "{file}:{line}: geo.nets_file: {}:6: nets[1].cidr: ",
        nets.display()
    );
    assert!(err.contains(&want), "want {want:?} in:\n{err}");
    // ... and a nets file that is not there.
    std::fs::remove_file(&nets).unwrap();
    let (ok, _, err) = steerd_in(env!("CARGO_MANIFEST_DIR").as_ref(), &["check-config", file]);
    assert!(!ok);
    assert!(
        err.contains(&format!("{file}:{line}: geo.nets_file: ")),
        "{err}"
    );
    assert!(err.contains("cannot read nets file"), "{err}");
}

#[test]
fn the_shipped_database_missing_is_a_warning_of_check_config_as_serve_runs_without_it() {
    // The demo copied elsewhere and checked from a directory without geodb/: serve would run
    // without a database, so check-config passes, and says so.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("steerd.toml");
    std::fs::write(&cfg, DEMO).unwrap();
    let file = cfg.to_str().unwrap();
    let (ok, out, err) = steerd_in(dir.path(), &["check-config", file]);
    assert!(ok, "{err}");
    assert!(out.contains("OK"), "{out}");
    let line = line_with(DEMO, "database = ");
    assert!(
        err.contains(&format!(
            "warning: {file}:{line}: geo.database: the shipped database"
        )),
        "{err}"
    );
}

#[test]
fn a_copied_configuration_keeps_its_relative_geo_database() {
    // The configuration and its database in one directory, run from another one.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        "geodb/geo-whois-asn-country.mmdb",
        dir.path().join("country.mmdb"),
    )
    .unwrap();
    let cfg = dir.path().join("steerd.toml");
    std::fs::write(
        &cfg,
        DEMO.replace("geodb/geo-whois-asn-country.mmdb", "country.mmdb"),
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let args = [
        "resolve",
        "--config",
        cfg.to_str().unwrap(),
        "--client",
        "81.2.69.160/24",
        "www.example.com",
    ];
    let (ok, out, err) = steerd_in(elsewhere.path(), &args);
    assert!(ok, "{err}");
    assert!(
        out.contains("country GB, continent EU (located by ECS, source: database)"),
        "{out}"
    );
    let (ok, _, err) = steerd_in(elsewhere.path(), &["check-config", cfg.to_str().unwrap()]);
    assert!(ok, "{err}");
}

#[test]
fn sighup_reload_errors_name_the_file_the_line_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("steerd.toml");
    let file = cfg.display().to_string();
    // No GeoIP database to start with (a debug build loads the shipped one slowly).
    let demo = demo_without_checks().replace(
        "database = \"geodb/geo-whois-asn-country.mmdb\"",
        "database = \"\"",
    );
    std::fs::write(&cfg, &demo).unwrap();
    let (mut child, addr) = serve(&cfg);
    let mut log = Lines::new(&mut child);
    let rejected = |log: &mut Lines, want: &str| {
        log.wait_for(want);
        assert!(
            log.seen
                .iter()
                .any(|l| l.contains("reload rejected") && l.contains(want)),
            "{want:?} in a rejection:\n{}",
            log.seen.join("\n")
        );
        assert_eq!(
            assets_answer(addr).as_deref(),
            Some("example.global.cdn-a.net."),
            "the running configuration keeps serving"
        );
    };

    // A syntax error: the file and its line.
    std::fs::write(&cfg, "[server\n").unwrap();
    signal(&child, "-HUP");
    rejected(&mut log, &format!("{file}:1: "));

    // An empty file serves nothing: refused.
    std::fs::write(&cfg, "").unwrap();
    signal(&child, "-HUP");
    rejected(&mut log, &format!("{file}: zones: no zone"));

    // A database that is not one: the line of geo.database.
    std::fs::write(dir.path().join("junk.mmdb"), b"junk").unwrap();
    let bad = demo.replace("database = \"\"", "database = \"junk.mmdb\"");
    std::fs::write(&cfg, &bad).unwrap();
    signal(&child, "-HUP");
    let line = line_with(&bad, "junk.mmdb");
    rejected(&mut log, &format!("{file}:{line}: geo.database: "));

    signal(&child, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "steerd did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Recovery rules shorter than their fail windows are explained by check-config (a note with
/// file, line and field), and accepted: hysteresis holds whatever the combination.
#[test]
fn check_config_explains_recoveries_shorter_than_the_fail_windows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerd.toml");
    let text = demo_without_checks().replace(
        "[[zones]]",
        "[health]\nrecover_for = 20\navailability_recover_for = 20\nmin_dwell = 5\n\n[[zones]]",
    );
    assert!(text.contains("availability_recover_for = 20"));
    std::fs::write(&path, &text).unwrap();
    let file = path.to_str().unwrap();
    let (ok, out, err) = steerd_in(dir.path(), &["check-config", file]);
    assert!(ok, "{err}");
    assert!(out.contains("OK"), "{out}");
    let line = line_with(&text, "availability_recover_for = 20");
    let want =
        format!("note: {file}:{line}: health.availability_recover_for: a target can recover 20s");
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("cannot fail it again"), "{err}");
}
