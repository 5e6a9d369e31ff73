//! A purge survives a SIGKILL (issue 14): `steerd purge send` hands a 10,000-URL purge to a
//! `steerd serve` process whose Cloudflare stand-in answers slowly; the process is killed
//! mid-way, started again on the same configuration and store, and `steerd purge status
//! --wait` sees every URL confirmed. Nothing is lost (every URL reached the CDN at least once)
//! and no credential appears in the logs or the CLI's output.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::cdn_apis::{CF_TOKEN, CF_ZONE, CdnApi, ProviderKind};
use common::config::{failover, zone};
use common::process::Steerd;
use common::wait_until;

const URLS: usize = 10_000;

fn cli(admin: std::net::SocketAddr, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_steerd"))
        .arg("purge")
        .args(["--api", &format!("http://{admin}")])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_sigkill_during_a_bulk_purge_loses_nothing() {
    let cf = CdnApi::start(ProviderKind::Cloudflare);
    cf.set_delay(Duration::from_millis(30));
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\ndns_listen = [\"127.0.0.1:0\"]\n\n[geo]\ndatabase = \"\"\n\n[purge]\nstore = \"purges.redb\"\n{}\n[[targets]]\nname = \"cdn-a\"\ncname = \"a.cdn.example.net\"\n[targets.purge]\nprovider = \"cloudflare\"\nbase_url = \"{}\"\nzone_id = \"{CF_ZONE}\"\ntoken_env = \"STEERD_TEST_CF_TOKEN\"\nrate = 20\nburst = 2\n{}",
        zone("example.com"),
        cf.base_url(),
        failover("www.example.com", &["cdn-a"])
    );
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, config).unwrap();
    let urls: Vec<String> = (0..URLS)
        .map(|i| format!("https://www.example.com/assets/{i}.js"))
        .collect();
    let list = dir.path().join("urls.txt");
    std::fs::write(&list, urls.join("\n")).unwrap();
    let env = [("STEERD_TEST_CF_TOKEN", CF_TOKEN)];

    let mut first = Steerd::spawn(&path, dir.path(), &env).unwrap_or_else(|e| panic!("{e}"));
    let out = cli(
        first.admin,
        &["send", "--file", list.to_str().unwrap(), "--no-wait"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    // 100 requests of 100 URLs at 20 a second: kill after a few.
    assert!(
        wait_until(Duration::from_secs(60), || cf.requests().len() >= 5).is_some(),
        "the purge started"
    );
    first.sigkill();
    let before = cf.requests().len();
    assert!(before < URLS / 100, "killed mid-way ({before} requests)");
    let mut logs = first.log_text();

    let second = Steerd::spawn(&path, dir.path(), &env).unwrap_or_else(|e| panic!("{e}"));
    let out = cli(second.admin, &["status", &id, "--wait"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("purge {id}: confirmed")),
        "{stderr}"
    );
    let purged: BTreeSet<String> = cf.purged().into_iter().collect();
    let missing: Vec<&String> = urls.iter().filter(|u| !purged.contains(*u)).collect();
    assert!(
        missing.is_empty(),
        "{} URL(s) lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    // Resumed, not restarted: what was confirmed and committed before the kill is not sent
    // again (only requests in flight at the kill may be).
    let again = cf.purged().len() - purged.len();
    assert!(
        again < before * 100,
        "{again} URLs sent twice of {} before the kill",
        before * 100
    );
    logs += &second.log_text();
    assert!(
        !logs.contains(CF_TOKEN) && !stderr.contains(CF_TOKEN),
        "the token was logged"
    );
}
