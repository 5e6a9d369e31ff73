//! `steerd probe --once`: the table of results and the exit status, against real local servers.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::config::{NO_GEODB, health_check, zone_ns1};
use common::fakecdn::{CdnOptions, closed_port, http_cdn};

const BIN: &str = env!("CARGO_BIN_EXE_steerd");

/// A configuration file in `dir` with one zone, no GeoIP database and the given targets, each
/// (name, address of its check).
fn write_config(dir: &Path, targets: &[(&str, SocketAddr)]) -> PathBuf {
    let mut text = format!(
        "\n{NO_GEODB}countries = \"{}/geodb/countries.csv\"\n\n[probe]\ntimeout = 1\n{}\n[[targets]]\nname = \"unchecked\"\na = [\"192.0.2.1\"]\n",
        env!("CARGO_MANIFEST_DIR"),
        zone_ns1("example.com", "127.0.0.1")
    );
    for (name, addr) in targets {
        text.push_str(&format!(
            "\n[[targets]]\nname = \"{name}\"\na = [\"127.0.0.1\"]\n{}\n[targets.check.content]\ncontains = \"ok\"\n",
            health_check(addr, "")
        ));
    }
    let path = dir.join("steerd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn probe(config: &Path, extra: &[&str]) -> Output {
    tokio::process::Command::new(BIN)
        .arg("probe")
        .arg("--once")
        .arg("--config")
        .arg(config)
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("steerd runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Table rows as (target, level, state): columns are separated by at least two spaces.
fn rows(stdout: &str) -> Vec<(String, String, String)> {
    stdout
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            (cells.len() >= 4).then(|| {
                (
                    cells[0].to_string(),
                    cells[1].to_string(),
                    cells[2].to_string(),
                )
            })
        })
        .collect()
}

fn row(t: &str, l: &str, s: &str) -> (String, String, String) {
    (t.to_string(), l.to_string(), s.to_string())
}

fn header_ok(stdout: &str) {
    let header = stdout
        .lines()
        .find(|l| l.starts_with("TARGET"))
        .unwrap_or_else(|| panic!("no header line in:\n{stdout}"));
    let cols: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(cols, ["TARGET", "LEVEL", "STATE", "LATENCY", "DETAIL"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_prints_the_table_and_fails_when_a_check_fails() {
    let cdn = http_cdn(CdnOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &[("good", cdn.addr()), ("dead", closed_port())]);

    let out = probe(&cfg, &[]).await;
    let stdout = text(&out.stdout);
    eprintln!("{stdout}{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "a failed check exits 1");
    header_ok(&stdout);
    assert_eq!(
        rows(&stdout)[1..],
        [
            row("good", "tcp", "ok"),
            row("good", "http", "ok"),
            row("good", "content", "ok"),
            row("good", "check", "ok"),
            row("dead", "tcp", "FAIL"),
            row("dead", "http", "not reached"),
            row("dead", "content", "not reached"),
            row("dead", "check", "FAIL"),
        ],
        "{stdout}"
    );
    assert!(stdout.contains("connection refused"), "{stdout}");
    assert!(
        stdout.contains("not probed (no [targets.check]): unchecked"),
        "{stdout}"
    );
    assert_eq!(cdn.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_exits_0_when_every_check_passes() {
    let a = http_cdn(CdnOptions::default()).await;
    let b = http_cdn(CdnOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &[("a", a.addr()), ("b", b.addr())]);

    let out = probe(&cfg, &[]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    header_ok(&stdout);
    let r = rows(&stdout);
    assert_eq!(r.len(), 1 + 2 * 4, "{stdout}");
    assert!(r[1..].iter().all(|(_, _, s)| s == "ok"), "{stdout}");
    assert_eq!((a.hits(), b.hits()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_filter_and_unknown_target() {
    let cdn = http_cdn(CdnOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &[("good", cdn.addr()), ("dead", closed_port())]);

    // Only the healthy target: exit 0, no row of the other.
    let out = probe(&cfg, &["--target", "good"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let r = rows(&stdout);
    assert!(r[1..].iter().all(|(t, _, _)| t == "good"), "{stdout}");
    assert_eq!(r.len(), 1 + 4, "{stdout}");
    assert!(!stdout.contains("unchecked"), "{stdout}");

    // Only the dead one: exit 1.
    let out = probe(&cfg, &["--target", "dead"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        rows(&stdout)[1..].iter().all(|(t, _, _)| t == "dead"),
        "{stdout}"
    );

    // Both, named: the failure counts.
    let out = probe(&cfg, &["--target", "good", "--target", "dead"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(rows(&text(&out.stdout)).len(), 1 + 8);

    // A name that is not in the configuration.
    let out = probe(&cfg, &["--target", "nope"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no target named \"nope\""), "{stderr}");
    assert!(!text(&out.stdout).contains("TARGET"));

    // A target without a check, alone: nothing to probe.
    let out = probe(&cfg, &["--target", "unchecked"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no target has a health check"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(cdn.hits(), 2);
}

/// `steerd probe --once` with at most `limit` file descriptors.
fn probe_with_fd_limit(config: &Path, limit: u64) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("probe")
        .arg("--once")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn");
    let rl = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    cmd.output().expect("steerd runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_is_a_local_error_not_a_failure() {
    // With too few descriptors the check cannot open its socket: the table says "local error"
    // (exit 1: nothing could be verified), never FAIL. The limit that leaves none for the check
    // depends on what the binary opens first, so try a range: the lowest cannot even start, the
    // highest check normally.
    let cdn = http_cdn(CdnOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &[("good", cdn.addr())]);
    let mut local = 0;
    let mut passed = 0;
    for limit in 4..=32 {
        let out = tokio::task::block_in_place(|| probe_with_fd_limit(&cfg, limit));
        let stdout = text(&out.stdout);
        let r = rows(&stdout);
        assert!(
            r.iter().all(|(_, _, s)| s != "FAIL"),
            "limit {limit}:\n{stdout}{}",
            text(&out.stderr)
        );
        if r.contains(&row("good", "check", "local error")) {
            assert_eq!(out.status.code(), Some(1), "limit {limit}:\n{stdout}");
            assert!(stdout.contains("EMFILE"), "limit {limit}:\n{stdout}");
            local += 1;
        } else if r.contains(&row("good", "check", "ok")) {
            assert_eq!(out.status.code(), Some(0), "limit {limit}:\n{stdout}");
            passed += 1;
        }
    }
    assert!(local > 0, "no limit gave a local error");
    assert!(passed > 0, "no limit let the check pass");
}
