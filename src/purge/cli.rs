//! `steerd purge`: the admin API's purge endpoints from the command line — send a purge
//! (items from flags or a file, one per line), follow it with a progress line per CDN until
//! every CDN has finished, show one purge, list purges.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// `steerd purge …`.
#[derive(clap::Args)]
pub struct PurgeArgs {
    /// The admin API's base URL.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8053")]
    pub api: String,
    /// Environment variable holding an admin token (sent as a bearer token when set).
    #[arg(long, global = true, default_value = "STEERD_ADMIN_TOKEN")]
    pub token_env: String,
    #[command(subcommand)]
    pub command: PurgeCommand,
}

#[derive(clap::Subcommand)]
pub enum PurgeCommand {
    /// Send a purge, then follow it until every CDN has confirmed or failed.
    Send(SendArgs),
    /// Show one purge.
    Status {
        id: String,
        /// Follow it until it has finished.
        #[arg(long)]
        wait: bool,
    },
    /// List purges, newest first.
    List {
        /// Only purges in this state (queued, sent, confirmed, retrying, failed).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(clap::Args)]
pub struct SendArgs {
    /// A URL to purge (repeatable).
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,
    /// A surrogate key / cache tag (repeatable).
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
    /// A URL prefix, `host/path` (repeatable).
    #[arg(long = "prefix", value_name = "PREFIX")]
    pub prefixes: Vec<String>,
    /// A host: everything cached for it (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Everything every CDN holds.
    #[arg(long)]
    pub everything: bool,
    /// A file of items, one per line: a URL (`https://...`), or `key:K`, `prefix:P`, `host:H`;
    /// blank lines and `#` comments skipped. `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Mark stale instead of removing where the CDN can.
    #[arg(long)]
    pub soft: bool,
    /// critical, high, normal (default) or low.
    #[arg(long, default_value = "normal")]
    pub priority: String,
    /// Only these targets (repeatable; default every target with [targets.purge]).
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    /// Sending the same key again returns the first purge instead of a new one.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Return once accepted, without following.
    #[arg(long)]
    pub no_wait: bool,
}

/// Runs `steerd purge`; the exit status is 1 when a followed purge failed on a CDN.
pub fn run(args: PurgeArgs) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    async fn call(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = body["error"].as_str().unwrap_or("(no error message)");
            bail!("{status}: {msg}");
        }
        Ok(body)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.trim_end_matches('/'))
    }
}

async fn run_async(args: PurgeArgs) -> anyhow::Result<bool> {
    let c = Client {
        base: args.api.clone(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?,
        token: std::env::var(&args.token_env)
            .ok()
            .filter(|t| !t.is_empty()),
    };
    match args.command {
        PurgeCommand::Send(s) => {
            let no_wait = s.no_wait;
            let body = body(s)?;
            let n = body_items(&body);
            let v = c.call(c.http.post(c.url("/v1/purges")).json(&body)).await?;
            let id = v["id"].as_str().unwrap_or("?").to_string();
            let dup = if v["duplicate"] == json!(true) {
                " (idempotency key seen before: the earlier purge)"
            } else {
                ""
            };
            eprintln!("purge {id} accepted: {n} item(s){dup}");
            if no_wait {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(true);
            }
            follow(&c, &id).await
        }
        PurgeCommand::Status { id, wait } => {
            if wait {
                return follow(&c, &id).await;
            }
            let v = c
                .call(c.http.get(c.url(&format!("/v1/purges/{id}"))))
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(v["state"] != json!("failed"))
        }
        PurgeCommand::List { state, limit } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(s) = state {
                q.push(("state", s));
            }
            let v = c.call(c.http.get(c.url("/v1/purges")).query(&q)).await?;
            for p in v["purges"].as_array().into_iter().flatten() {
                println!(
                    "{:>8}  {:<9}  {:<8}  {}  {}",
                    p["id"].as_str().unwrap_or(""),
                    p["state"].as_str().unwrap_or(""),
                    p["priority"].as_str().unwrap_or(""),
                    p["accepted_at"].as_str().unwrap_or(""),
                    p["items"]
                );
            }
            Ok(true)
        }
    }
}

fn body_items(b: &Value) -> usize {
    ["urls", "keys", "prefixes", "hosts"]
        .iter()
        .map(|k| b[k].as_array().map_or(0, Vec::len))
        .sum::<usize>()
        + usize::from(b["everything"] == json!(true))
}

fn body(s: SendArgs) -> anyhow::Result<Value> {
    let (mut urls, mut keys, mut prefixes, mut hosts) = (s.urls, s.keys, s.prefixes, s.hosts);
    if let Some(f) = &s.file {
        let text = if f.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())?
        } else {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        };
        for (n, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if let Some(k) = l.strip_prefix("key:") {
                keys.push(k.trim().to_string());
            } else if let Some(p) = l.strip_prefix("prefix:") {
                prefixes.push(p.trim().to_string());
            } else if let Some(h) = l.strip_prefix("host:") {
                hosts.push(h.trim().to_string());
            } else if l.starts_with("http://") || l.starts_with("https://") {
                urls.push(l.to_string());
            } else {
                bail!(
                    "{}:{}: {l:?}: expected a URL or key:, prefix:, host:",
                    f.display(),
                    n + 1
                );
            }
        }
    }
    let mut b = json!({
        "urls": urls, "keys": keys, "prefixes": prefixes, "hosts": hosts,
        "everything": s.everything, "soft": s.soft, "priority": s.priority,
        "targets": s.targets,
    });
    if let Some(k) = s.idempotency_key {
        b["idempotency_key"] = json!(k);
    }
    if body_items(&b) == 0 {
        bail!("nothing to purge: give --url, --key, --prefix, --host, --everything or --file");
    }
    Ok(b)
}

/// Polls the purge and prints a line per CDN until every CDN has finished.
async fn follow(c: &Client, id: &str) -> anyhow::Result<bool> {
    let tty = std::io::stderr().is_terminal();
    let mut printed = 0;
    loop {
        let v = c
            .call(c.http.get(c.url(&format!("/v1/purges/{id}"))))
            .await?;
        let cdns = v["cdns"].as_object().cloned().unwrap_or_default();
        let lines: Vec<String> = cdns
            .iter()
            .map(|(t, p)| {
                let total = p["confirmed"].as_u64().unwrap_or(0)
                    + p["failed"].as_u64().unwrap_or(0)
                    + p["open"].as_u64().unwrap_or(0);
                let mut l = format!(
                    "  {t:<16} {:<9} {:>7}/{total} confirmed  {} failed  {} request(s)",
                    p["state"].as_str().unwrap_or(""),
                    p["confirmed"],
                    p["failed"],
                    p["attempts"]
                );
                if let Some(s) = p["seconds_to_confirm"].as_f64() {
                    l += &format!("  in {s:.2}s");
                }
                if let Some(e) = p["errors"].as_array().and_then(|e| e.last()) {
                    l += &format!("  last error: {}", e.as_str().unwrap_or(""));
                }
                l
            })
            .collect();
        let finished = cdns
            .values()
            .all(|p| matches!(p["state"].as_str(), Some("confirmed" | "failed")));
        let mut err = std::io::stderr();
        if tty && printed > 0 {
            let _ = write!(err, "\x1b[{printed}A");
        }
        if tty || finished {
            for l in &lines {
                let _ = writeln!(err, "\x1b[2K{l}");
            }
            printed = lines.len();
        }
        if finished {
            let state = v["state"].as_str().unwrap_or("");
            eprintln!("purge {id}: {state}");
            return Ok(state == "confirmed");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
