//! Bulk purge benchmark (issue 14): 100,000 URLs and 10,000 surrogate keys purged across four
//! providers (Cloudflare, Fastly, Akamai, CloudFront stand-ins from `tests/common/cdn_apis.rs`,
//! which check the documented request shapes and credentials) by a real `steerd serve`
//! process under each provider's default rate limit. It prints, per provider: the API calls
//! made against one call per item, the time from acceptance to every item confirmed, and
//! steerd's memory (peak RSS) while it worked.
//!
//! Run: `bash bench/purge.sh` (builds the release binary, then this). Environment:
//! `STEERD_BIN` (default `target/release/steerd`), `URLS` (100000), `KEYS` (10000).

#[path = "../tests/common/cdn_apis.rs"]
mod cdn_apis;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cdn_apis::*;
use serde_json::{Value, json};

const PROVIDERS: [(&str, ProviderKind); 4] = [
    ("cloudflare", ProviderKind::Cloudflare),
    ("fastly", ProviderKind::Fastly),
    ("akamai", ProviderKind::Akamai),
    ("cloudfront", ProviderKind::Cloudfront),
];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `[targets.purge]` of one stand-in, credentials by variable (set for the child below).
fn purge_section(kind: ProviderKind, base: &str) -> String {
    let keys = match kind {
        ProviderKind::Cloudflare => {
            format!("provider = \"cloudflare\"\nzone_id = \"{CF_ZONE}\"\ntoken_env = \"B_CF\"\n")
        }
        ProviderKind::Fastly => format!(
            "provider = \"fastly\"\nservice_id = \"{FASTLY_SERVICE}\"\ntoken_env = \"B_FASTLY\"\n"
        ),
        ProviderKind::Akamai => format!(
            "provider = \"akamai\"\nclient_token_env = \"B_AK_CT\"\nclient_secret_env = \"B_AK_CS\"\naccess_token_env = \"B_AK_AT\"\ncp_codes = [{}]\n",
            AKAMAI_CP_CODES.map(|c| c.to_string()).join(", ")
        ),
        ProviderKind::Cloudfront => format!(
            "provider = \"cloudfront\"\ndistribution_id = \"{CF_DISTRIBUTION}\"\naccess_key_id_env = \"B_AWS_ID\"\nsecret_access_key_env = \"B_AWS_SECRET\"\n"
        ),
        ProviderKind::Http => unreachable!(),
    };
    format!("[targets.purge]\n{keys}base_url = \"{base}\"\n")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// steerd's resident set now and at its peak, in KiB (`/proc/PID/status`).
fn rss_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() {
    let n_urls = env_usize("URLS", 100_000);
    let n_keys = env_usize("KEYS", 10_000);
    let bin = std::env::var("STEERD_BIN").unwrap_or_else(|_| "target/release/steerd".into());
    let apis: Vec<(&str, CdnApi)> = PROVIDERS
        .iter()
        .map(|(n, k)| (*n, CdnApi::start(*k)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = format!(
        "[server]\ndns_listen = [\"127.0.0.1:0\"]\n\n[geo]\ndatabase = \"\"\n\n[purge]\nstore = \"purges.redb\"\nmax_items = {}\n\n[[zones]]\nname = \"example.com\"\nns = [\"ns1.example.com\"]\n[zones.soa]\nmname = \"ns1.example.com\"\nrname = \"hostmaster.example.com\"\n",
        n_urls.max(n_keys)
    );
    for (name, api) in &apis {
        cfg += &format!(
            "\n[[targets]]\nname = \"{name}\"\ncname = \"{name}.example.net\"\n{}",
            purge_section(api.kind, &api.base_url())
        );
    }
    cfg += "\n[[services]]\nname = \"www.example.com\"\npolicy = \"failover\"\ntargets = [{ target = \"cloudflare\" }, { target = \"fastly\" }]\n";
    let path = dir.path().join("steerd.toml");
    std::fs::write(&path, cfg).unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(&bin)
        .args(["serve", "--config"])
        .arg(&path)
        .args(["--dns-listen", "127.0.0.1:0", "--admin-listen"])
        .arg(admin.to_string())
        .env_remove("STEERD_ADMIN_TOKEN")
        .env("RUST_LOG", "warn")
        .env("B_CF", CF_TOKEN)
        .env("B_FASTLY", FASTLY_TOKEN)
        .env("B_AK_CT", AKAMAI_CLIENT_TOKEN)
        .env("B_AK_CS", AKAMAI_CLIENT_SECRET)
        .env("B_AK_AT", AKAMAI_ACCESS_TOKEN)
        .env("B_AWS_ID", AWS_KEY_ID)
        .env("B_AWS_SECRET", AWS_SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e} (build it: cargo build --release)"));
    let steerd = Proc(child);
    let pid = steerd.0.id();
    let api = format!("http://{admin}");
    let http = reqwest::Client::new();
    let up = Instant::now();
    while http.get(format!("{api}/v1/purges")).send().await.is_err() {
        assert!(
            up.elapsed() < Duration::from_secs(30),
            "steerd did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (idle_rss, _) = rss_kib(pid);

    // Keys are registered for the providers without tag purges (CloudFront): each key tags
    // ten of the URLs (every URL belongs to one key).
    let urls: Vec<String> = (0..n_urls)
        .map(|i| format!("https://www.example.com/assets/{}/{i}.js", i % 1000))
        .collect();
    let keys: Vec<String> = (0..n_keys)
        .map(|i| format!("product:{i}:reviews"))
        .collect();
    let registered = register_keys(&http, &api, &keys, &urls).await;

    let post = |body: Value| {
        let (http, api) = (http.clone(), api.clone());
        async move {
            let r = http
                .post(format!("{api}/v1/purges"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let v: Value = r.json().await.unwrap();
            assert!(status.is_success(), "POST /v1/purges: {status} {v}");
            v["id"].as_str().unwrap().to_string()
        }
    };
    let t0 = Instant::now();
    let url_id = post(json!({"urls": urls, "priority": "normal"})).await;
    let key_id = post(json!({"keys": keys, "priority": "normal"})).await;
    let accepted = t0.elapsed();

    let mut peak_rss = 0;
    let mut done: BTreeMap<String, Value> = BTreeMap::new();
    let deadline = Duration::from_secs(3600);
    while done.len() < 2 {
        assert!(t0.elapsed() < deadline, "not finished within an hour");
        for id in [&url_id, &key_id] {
            if done.contains_key(id.as_str()) {
                continue;
            }
            let v: Value = http
                .get(format!("{api}/v1/purges/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let finished = v["cdns"]
                .as_object()
                .is_some_and(|c| c.values().all(|p| p["finished_at"].is_string()));
            if finished {
                done.insert(id.clone(), v);
            }
        }
        peak_rss = peak_rss.max(rss_kib(pid).0);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let total = t0.elapsed();
    let (_, hwm) = rss_kib(pid);

    println!(
        "# {n_urls} URLs + {n_keys} keys, four providers at their default rate limits \
         (keys registered for CloudFront: {registered}); accepted in {:.2} s\n",
        accepted.as_secs_f64()
    );
    println!(
        "| provider | items | API calls | one call per item | fewer calls | URLs confirmed after | keys confirmed after | state (urls/keys) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    let (mut calls_all, mut items_all) = (0, 0);
    for (name, a) in &apis {
        let took = |id: &str| match done[id]["cdns"][*name]["seconds_to_confirm"].as_f64() {
            Some(s) => format!("{s:.1} s"),
            None => "-".into(),
        };
        let state = |id: &str| {
            done[id]["cdns"][*name]["state"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        };
        let calls = a.calls();
        let items = n_urls + n_keys;
        calls_all += calls;
        items_all += items;
        println!(
            "| {name} | {items} | {calls} | {items} | {:.0}× | {} | {} | {}/{} |",
            items as f64 / calls.max(1) as f64,
            took(&url_id),
            took(&key_id),
            state(&url_id),
            state(&key_id)
        );
    }
    println!(
        "| all | {items_all} | {calls_all} | {items_all} | {:.0}× | | {:.1} s (all confirmed) | |",
        items_all as f64 / calls_all.max(1) as f64,
        total.as_secs_f64()
    );
    println!(
        "\nsteerd RSS: {:.1} MiB idle, {:.1} MiB peak sampled, {:.1} MiB high-water mark",
        idle_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    for (name, a) in &apis {
        let failed: Vec<_> = a.seen().into_iter().filter(|r| r.status >= 400).collect();
        if !failed.is_empty() {
            println!(
                "{name}: {} request(s) refused, first: {} {}",
                failed.len(),
                failed[0].status,
                failed[0].body.chars().take(200).collect::<String>()
            );
        }
    }
}

/// Fills the surrogate-key registry (for CloudFront) when this steerd has one: key i tags
/// every URL j with j % keys == i. Returns whether it did.
async fn register_keys(
    http: &reqwest::Client,
    api: &str,
    keys: &[String],
    urls: &[String],
) -> bool {
    let mut by_key: Vec<Vec<&String>> = vec![Vec::new(); keys.len()];
    for (j, u) in urls.iter().enumerate() {
        by_key[j % keys.len().max(1)].push(u);
    }
    for (k, us) in keys.iter().zip(by_key) {
        let r = http
            .put(format!("{api}/v1/purges/keys/{k}"))
            .json(&json!({ "urls": us }))
            .send()
            .await
            .unwrap();
        if r.status() == reqwest::StatusCode::NOT_FOUND
            || r.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED
        {
            return false;
        }
        assert!(r.status().is_success(), "registering {k}: {}", r.status());
    }
    true
}
