//! deploy/ and docs/operations.md: the Prometheus rules (promtool: syntax and unit tests), the
//! Grafana dashboard (valid JSON; every query uses only metrics steerd exports, and parses as
//! PromQL), the systemd unit (hardening; `systemd-analyze verify` when available), the container
//! image and the Kubernetes manifests (paths, ports, command lines the binary accepts, the
//! ConfigMap's configuration passes `steerd check-config`).
//!
//! promtool comes from Debian's `prometheus` package, which `.ci/run` installs: without it these
//! tests fail in CI (`CI` set) and print a note elsewhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_steerd");

/// Every metric steerd exports that is a counter or a gauge.
const METRICS: &[&str] = &[
    "steerd_dns_queries_total",
    "steerd_probe_checks_total",
    "steerd_probe_last_run_timestamp_seconds",
    "steerd_target_up",
    "steerd_target_state",
    "steerd_target_error_ratio",
    "steerd_target_availability_ratio",
    "steerd_target_latency_p95_seconds",
    "steerd_target_cache_hit_ratio",
    "steerd_target_reported_cache_hit_ratio",
    "steerd_rum_latency_p95_seconds",
    "steerd_rum_beacons_total",
    "steerd_rum_error_ratio",
    "steerd_remote_observations_total",
    "steerd_target_transitions_total",
    "steerd_events_total",
    "steerd_service_all_down",
    "steerd_table_swaps_total",
    "steerd_table_generation",
    "steerd_config_version",
    "steerd_config_reloads_total",
    "steerd_alert_deliveries_total",
    "steerd_alert_failures_total",
    "steerd_alert_dropped_total",
    "steerd_alert_queue_depth",
    "steerd_target_spend_usd",
    "steerd_target_projected_spend_usd",
    "steerd_target_monthly_cap_usd",
    "steerd_admin_requests_total",
    "steerd_build_info",
    "steerd_start_time_seconds",
];

/// The histograms: exported as `NAME_bucket`, `NAME_sum` and `NAME_count`.
const HISTOGRAMS: &[&str] = &[
    "steerd_dns_response_duration_seconds",
    "steerd_probe_duration_seconds",
    "steerd_compile_duration_seconds",
];

const RULES: &str = "deploy/prometheus/steerd-rules.yml";
const RULES_TEST: &str = "deploy/prometheus/steerd-rules.test.yml";
const PROM_CONFIG: &str = "deploy/prometheus/prometheus.example.yml";
const DASHBOARD: &str = "deploy/grafana/steerd-dashboard.json";
const UNIT: &str = "deploy/steerd.service";
const CONTAINERFILE: &str = "deploy/Containerfile";
const K8S: &str = "deploy/kubernetes";
const OPERATIONS: &str = "docs/operations.md";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn have(tool: &str, version_arg: &str) -> bool {
    Command::new(tool)
        .arg(version_arg)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A tool the checks need: present, or the test fails saying how to get it (`.ci/run`, the
/// README's test command, installs every one). No check is ever skipped.
#[track_caller]
fn need(tool: &str, version_arg: &str, package: &str) -> &'static str {
    assert!(
        have(tool, version_arg),
        "{tool} is not installed: run `bash .ci/run` (it installs the Debian package `{package}`)"
    );
    Box::leak(tool.to_string().into_boxed_str())
}

fn promtool() -> &'static str {
    need("promtool", "--version", "prometheus")
}

/// Every `steerd_...` metric-like token of `text`.
fn metric_tokens(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"(^|[^A-Za-z0-9_:])(steerd_[a-z0-9_]+)").unwrap();
    re.captures_iter(text).map(|c| c[2].to_string()).collect()
}

/// The exported metric a series name belongs to, or why it is not one.
fn metric_of(series: &str) -> Result<&'static str, String> {
    if let Some(m) = METRICS.iter().find(|m| **m == series) {
        return Ok(m);
    }
    for h in HISTOGRAMS {
        if *h == series {
            return Err(format!(
                "{series} is a histogram: use {series}_bucket, _sum or _count"
            ));
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if series.strip_suffix(suffix) == Some(h) {
                return Ok(h);
            }
        }
    }
    Err(format!("{series} is not a metric steerd exports"))
}

/// Check every metric token of `text` (from `what`); returns the metrics used.
fn check_metrics(what: &str, text: &str) -> BTreeSet<&'static str> {
    let mut used = BTreeSet::new();
    let mut bad = Vec::new();
    for t in metric_tokens(text) {
        match metric_of(&t) {
            Ok(m) => {
                used.insert(m);
            }
            Err(e) => bad.push(e),
        }
    }
    assert!(bad.is_empty(), "{what}:\n  {}", bad.join("\n  "));
    used
}

/// Every `.rs` file under src/.
fn rust_sources() -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out
}

/// The names the source registers, when the metrics code is there: every metric the deploy files
/// use must be one of them, so a renamed metric breaks this test and not the dashboards.
fn check_against_source(what: &str, used: &BTreeSet<&'static str>) {
    let mut names = BTreeSet::new();
    for p in rust_sources() {
        names.extend(metric_tokens(&std::fs::read_to_string(&p).unwrap()));
    }
    assert!(
        names.contains("steerd_dns_queries_total"),
        "src/ registers no steerd_dns_queries_total: the scan of src/ is broken"
    );
    let missing: Vec<_> = used.iter().filter(|m| !names.contains(**m)).collect();
    assert!(
        missing.is_empty(),
        "{what} uses metrics that src/ does not register: {missing:?}"
    );
}

// ------------------------------------------------------------------------------------------------
// Prometheus rules

#[test]
fn rules_pass_promtool_check_and_unit_tests() {
    let promtool = promtool();
    let out = run(Command::new(promtool)
        .args(["check", "rules", RULES])
        .current_dir(root()));
    assert!(out.status.success(), "promtool check rules: {}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SUCCESS"),
        "{}",
        show(&out)
    );

    let out = run(Command::new(promtool)
        .args(["test", "rules", RULES_TEST])
        .current_dir(root()));
    assert!(out.status.success(), "promtool test rules: {}", show(&out));

    let out = run(Command::new(promtool)
        .args(["check", "config", "--syntax-only", PROM_CONFIG])
        .current_dir(root()));
    assert!(
        out.status.success(),
        "promtool check config: {}",
        show(&out)
    );
}

/// One `- alert:` block of the rules file.
#[derive(Debug)]
struct Alert {
    name: String,
    expr: String,
    severity: String,
    runbook: String,
    text: String,
}

/// A small reader for the rules file's layout (promtool checks the YAML itself).
fn alerts() -> Vec<Alert> {
    let text = read(RULES);
    let mut blocks: Vec<Vec<&str>> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("- alert:") {
            blocks.push(vec![line]);
        } else if t.starts_with("- name:") || t.starts_with("- record:") {
            blocks.push(Vec::new());
        } else if let Some(b) = blocks.last_mut()
            && !b.is_empty()
        {
            b.push(line);
        }
    }
    let value = |l: &str| -> String {
        let v = l.split_once(':').unwrap().1.trim();
        v.trim_matches('"').to_string()
    };
    blocks
        .into_iter()
        .filter(|b| !b.is_empty())
        .map(|b| {
            let name = value(b[0]);
            let mut expr = String::new();
            let mut severity = String::new();
            let mut runbook = String::new();
            let mut in_expr = false;
            for l in &b[1..] {
                let t = l.trim();
                if let Some(rest) = t.strip_prefix("expr:") {
                    let rest = rest.trim();
                    in_expr = rest == "|";
                    if !in_expr {
                        expr = rest.to_string();
                    }
                } else if in_expr && (t.starts_with("for:") || t.starts_with("labels:")) {
                    in_expr = false;
                } else if in_expr {
                    expr.push_str(t);
                    expr.push(' ');
                } else if t.starts_with("severity:") {
                    severity = value(t);
                } else if t.starts_with("runbook_url:") {
                    runbook = t
                        .split_once(':')
                        .unwrap()
                        .1
                        .trim()
                        .trim_matches('"')
                        .to_string();
                }
            }
            Alert {
                name,
                expr: expr.trim().to_string(),
                severity,
                runbook,
                text: b.join("\n"),
            }
        })
        .collect()
}

/// Whether `text` matches `pattern` in multi-line mode (`^` and `$` at every line).
fn matches_lines(text: &str, pattern: &str) -> bool {
    regex::Regex::new(&format!("(?m){pattern}"))
        .unwrap()
        .is_match(text)
}

/// GitHub's anchor for a Markdown heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn rules_hold_the_required_alerts_and_thresholds() {
    let alerts = alerts();
    assert!(alerts.len() >= 15, "{alerts:#?}");
    let find = |name: &str, severity: &str| -> Vec<&Alert> {
        alerts
            .iter()
            .filter(|a| a.name == name && a.severity == severity)
            .collect()
    };
    // (alert, severity, the expression contains, the expression ends with)
    let mut required: Vec<(&str, &str, &str, &str)> = vec![
        (
            "SteerdFailover",
            "warning",
            r#"increase(steerd_events_total{kind="failover"}[5m])"#,
            "> 0",
        ),
        (
            "SteerdAllTargetsDown",
            "critical",
            "steerd_service_all_down",
            "== 1",
        ),
        (
            "SteerdProberFailing",
            "warning",
            "time() - steerd_probe_last_run_timestamp_seconds",
            "> 120",
        ),
        ("SteerdNodeDown", "warning", r#"up{job="steerd"}"#, "== 0"),
        (
            "SteerdAlertDeliveryFailing",
            "warning",
            "steerd_alert_failures_total",
            "> 0",
        ),
    ];
    // A warning and a critical alert on one expression: (alert, the expression contains, it
    // ends with at warning, at critical).
    let tiers: &[(&str, &str, &str, &str)] = &[
        (
            "SteerdCacheHitRatioDrop",
            r#"steerd_target_cache_hit_ratio{window="10m"}"#,
            "> 0.05",
            "> 0.15",
        ),
        (
            "SteerdCacheHitRatioDrop",
            "steerd_target_reported_cache_hit_ratio",
            "> 0.05",
            "> 0.15",
        ),
        (
            "SteerdOrigin5xx",
            r#"steerd_target_error_ratio{role="origin",window="5m"}"#,
            "> 0.001",
            "> 0.01",
        ),
        (
            "SteerdEdgeP95",
            r#"steerd_target_latency_p95_seconds{role="edge",window="5m"}"#,
            "> 0.1",
            "> 0.5",
        ),
        (
            "SteerdOriginP95",
            r#"steerd_target_latency_p95_seconds{role="origin",window="5m"}"#,
            "> 0.5",
            "> 2",
        ),
    ];
    for &(name, contains, warning, critical) in tiers {
        required.push((name, "warning", contains, warning));
        required.push((name, "critical", contains, critical));
    }
    for (name, severity, contains, ends) in required {
        let found = find(name, severity);
        assert!(
            found
                .iter()
                .any(|a| a.expr.contains(contains) && a.expr.ends_with(ends)),
            "no {severity} {name} with `{contains}` ... `{ends}` in {RULES}; found: {found:#?}"
        );
    }

    // Every alert: a severity, a summary, a description and a runbook section that exists.
    let ops = read(OPERATIONS);
    let anchors: BTreeSet<String> = ops
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect();
    for a in &alerts {
        assert!(
            a.severity == "warning" || a.severity == "critical",
            "{}: severity {:?}",
            a.name,
            a.severity
        );
        assert!(a.text.contains("summary:"), "{}: no summary", a.name);
        assert!(
            a.text.contains("description:"),
            "{}: no description",
            a.name
        );
        let anchor = a
            .runbook
            .strip_prefix("docs/operations.md#")
            .unwrap_or_else(|| panic!("{}: runbook_url {:?}", a.name, a.runbook));
        assert_eq!(anchor, a.name.to_lowercase(), "{}: runbook anchor", a.name);
        assert!(
            anchors.contains(anchor),
            "{}: no heading for #{anchor} in {OPERATIONS}",
            a.name
        );
    }

    // The unit tests exercise at least these.
    let tests = read(RULES_TEST);
    for name in [
        "SteerdFailover",
        "SteerdAllTargetsDown",
        "SteerdEdgeP95",
        "SteerdCacheHitRatioDrop",
        "SteerdProberFailing",
        "SteerdOrigin5xx",
    ] {
        assert!(
            tests.contains(&format!("alertname: {name}")),
            "{RULES_TEST} does not test {name}"
        );
    }
}

#[test]
fn rules_use_only_exported_metrics() {
    let mut used = check_metrics(RULES, &read(RULES));
    used.extend(check_metrics(RULES_TEST, &read(RULES_TEST)));
    check_against_source(RULES, &used);
}

// ------------------------------------------------------------------------------------------------
// Grafana dashboard

/// Every PromQL query of the dashboard (panels, annotations) and every variable query.
fn dashboard_queries(v: &serde_json::Value, exprs: &mut Vec<String>, vars: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", serde_json::Value::String(s)) => exprs.push(s.clone()),
                    ("definition", serde_json::Value::String(s)) => vars.push(s.clone()),
                    _ => dashboard_queries(x, exprs, vars),
                }
            }
        }
        serde_json::Value::Array(a) => {
            for x in a {
                dashboard_queries(x, exprs, vars);
            }
        }
        _ => {}
    }
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

#[test]
fn dashboard_is_valid_and_uses_only_exported_metrics() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36, "schemaVersion");
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()), "uid");
    assert!(d["title"].as_str().is_some(), "title");
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a Prometheus data source variable named `datasource`"
    );

    // Panels: unique ids, a layout, and queries on the ${datasource} variable.
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut types = BTreeSet::new();
    for p in panels {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "duplicate panel id {id}");
        assert!(p["gridPos"]["w"].as_u64().is_some(), "panel {id}: gridPos");
        types.insert(p["type"].as_str().unwrap().to_string());
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {id}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {id}: no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {id}");
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "panel {id}"
            );
        }
    }
    assert!(
        types.contains("state-timeline"),
        "a state timeline of the targets"
    );
    let annotations = d["annotations"]["list"].as_array().unwrap();
    assert!(
        annotations.iter().any(|a| a["expr"]
            .as_str()
            .is_some_and(|e| e.contains(r#"kind="failover""#))),
        "failovers as annotations"
    );

    let (mut exprs, mut var_queries) = (Vec::new(), Vec::new());
    dashboard_queries(&d, &mut exprs, &mut var_queries);
    let all = exprs.join("\n") + "\n" + &var_queries.join("\n");
    let used = check_metrics(DASHBOARD, &all);
    // What the brief asks the dashboard to show.
    for m in [
        "steerd_dns_queries_total",
        "steerd_dns_response_duration_seconds",
        "steerd_target_up",
        "steerd_probe_duration_seconds",
        "steerd_target_error_ratio",
        "steerd_target_availability_ratio",
        "steerd_target_cache_hit_ratio",
        "steerd_events_total",
        "steerd_target_spend_usd",
        "steerd_target_monthly_cap_usd",
        "steerd_alert_deliveries_total",
        "steerd_alert_failures_total",
        "steerd_table_swaps_total",
        "steerd_compile_duration_seconds",
        "steerd_config_version",
    ] {
        assert!(used.contains(m), "the dashboard shows no {m}");
    }
    check_against_source(DASHBOARD, &used);
}

/// Every dashboard query, with Grafana's variables filled in, is valid PromQL: promtool checks
/// them as recording rules.
#[test]
fn dashboard_queries_parse_as_promql() {
    let promtool = promtool();
    let (mut exprs, mut vars) = (Vec::new(), Vec::new());
    dashboard_queries(&dashboard(), &mut exprs, &mut vars);
    let var = regex::Regex::new(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?").unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = var.replace_all(e, |c: &regex::Captures| match &c[1] {
            "__rate_interval" | "__interval" => "5m".to_string(),
            "__range" => "1h".to_string(),
            _ => ".*".to_string(),
        });
        let quoted = serde_json::to_string(&e).unwrap(); // a valid YAML double-quoted scalar
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, &rules).unwrap();
    let out = run(Command::new(promtool).arg("check").arg("rules").arg(&file));
    assert!(
        out.status.success(),
        "dashboard queries:\n{rules}\n{}",
        show(&out)
    );
}

// ------------------------------------------------------------------------------------------------
// systemd unit

/// `Key=value` pairs of a unit file, in order (a key may repeat).
fn unit_entries(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with('#') && !l.starts_with(';') && !l.starts_with('[')
        })
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Check that the binary accepts `args` (the command line of a unit, image or manifest): the
/// configuration path is replaced by a broken file, so `serve` stops at loading it (exit 1,
/// naming the file) instead of running; a command-line mistake exits 2.
fn check_command_line(what: &str, args: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.toml");
    std::fs::write(&bad, "this is [ not toml\n").unwrap();
    let mut args = args.to_vec();
    let i = args
        .iter()
        .position(|a| a == "--config")
        .unwrap_or_else(|| panic!("{what}: no --config in {args:?}"));
    args[i + 1] = bad.to_str().unwrap().to_string();
    let out = run(Command::new(BIN).args(&args));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: steerd {args:?}: {}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("broken.toml"),
        "{what}: steerd {args:?} did not stop at the configuration: {}",
        show(&out)
    );
}

#[test]
fn systemd_unit_is_hardened() {
    let text = read(UNIT);
    let entries = unit_entries(&text);
    let values = |key: &str| -> Vec<&str> {
        entries
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    for (key, want) in [
        ("DynamicUser", "yes"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallFilter", "@system-service"),
        ("SystemCallArchitectures", "native"),
        ("StateDirectory", "steerd"),
        ("WorkingDirectory", "/usr/share/steerd"),
    ] {
        assert!(
            values(key).contains(&want),
            "{UNIT}: {key}={want} missing (has {:?})",
            values(key)
        );
    }
    // CAP_NET_BIND_SERVICE and nothing else; no fixed user; never PrivateUsers (it would take
    // port 53 away).
    for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
        assert_eq!(values(key), ["CAP_NET_BIND_SERVICE"], "{UNIT}: {key}");
    }
    assert!(values("User").is_empty(), "{UNIT}: User= with DynamicUser");
    assert!(values("PrivateUsers").is_empty(), "{UNIT}: PrivateUsers");

    // Serves the writable live file; SIGHUP reloads; the command line is one steerd accepts.
    let start = values("ExecStart");
    assert_eq!(start.len(), 1, "{UNIT}: ExecStart");
    let argv: Vec<String> = start[0].split_whitespace().map(String::from).collect();
    assert_eq!(argv[0], "/usr/local/bin/steerd");
    let live = argv
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| w[1].as_str());
    assert_eq!(
        live,
        Some("/var/lib/steerd/steerd.toml"),
        "{UNIT}: --config"
    );
    check_command_line(UNIT, &argv[1..]);
    assert!(
        values("ExecReload")
            .iter()
            .any(|v| v.contains("-HUP $MAINPID"))
    );
    assert!(
        values("ExecStartPre")
            .iter()
            .any(|v| v.contains("/etc/steerd/steerd.toml")
                && v.contains("/var/lib/steerd/steerd.toml")),
        "{UNIT}: the live file is seeded from /etc/steerd/steerd.toml"
    );
}

#[test]
fn systemd_unit_passes_systemd_analyze() {
    need("systemd-analyze", "--version", "systemd");
    // The unit names /usr/local/bin/steerd, which verify wants to exist: point it at this build.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("steerd.service");
    std::fs::write(&unit, read(UNIT).replace("/usr/local/bin/steerd", BIN)).unwrap();
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&unit));
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}",
        show(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("steerd.service:"),
        "systemd-analyze verify complains about the unit: {}",
        show(&out)
    );

    // The exposure score, where this systemd can compute it offline (systemd >= 250).
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let score = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for steerd.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<f64>().ok());
    // systemd >= 250 (Debian 12 has 252) computes it offline.
    let s = score.unwrap_or_else(|| panic!("no exposure score from systemd-analyze:\n{text}"));
    eprintln!("systemd-analyze security: exposure {s}");
    assert!(s <= 2.5, "exposure {s} is higher than expected:\n{text}");
}

// ------------------------------------------------------------------------------------------------
// Container image

/// The Containerfile's instructions, continuation lines joined, comments dropped.
fn containerfile() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in read(CONTAINERFILE).lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        if let Some((k, v)) = cur.trim().split_once(char::is_whitespace) {
            out.push((k.to_uppercase(), v.trim().to_string()));
        }
        cur.clear();
    }
    out
}

fn json_args(what: &str, v: &str) -> Vec<String> {
    serde_json::from_str(v).unwrap_or_else(|e| panic!("{what}: exec form expected: {v}: {e}"))
}

/// Whether one of `paths` (files or directories, repository-relative) holds `path`.
fn covers(paths: &[&str], path: &str) -> bool {
    let path = path.trim_end_matches('/');
    paths.iter().any(|p| {
        let p = p.trim_end_matches('/');
        path == p || path.starts_with(&format!("{p}/"))
    })
}

/// The repository-relative paths that src/ compiles in with include_str!/include_bytes!.
fn compiled_in_files() -> Vec<String> {
    let re = regex::Regex::new(r#"include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)"#).unwrap();
    let mut out = Vec::new();
    for p in rust_sources() {
        let text = std::fs::read_to_string(&p).unwrap();
        for c in re.captures_iter(&text) {
            let target = p.parent().unwrap().join(&c[1]);
            let target = target
                .canonicalize()
                .unwrap_or_else(|e| panic!("{}: {}: {e}", p.display(), &c[1]));
            let rel = target
                .strip_prefix(root().canonicalize().unwrap())
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            out.push(rel);
        }
    }
    assert!(
        out.iter().any(|f| f == "config/steerd.toml"),
        "include_str! scan: {out:?}"
    );
    out.sort();
    out.dedup();
    out
}

#[test]
fn containerfile_copies_existing_files_and_exposes_dns_and_admin() {
    let ins = containerfile();
    let froms: Vec<&String> = ins
        .iter()
        .filter(|(k, _)| k == "FROM")
        .map(|(_, v)| v)
        .collect();
    assert!(froms.len() >= 2, "multi-stage build: {froms:?}");
    assert!(
        froms[0].contains("rust:") && froms[0].contains(" AS build"),
        "builder: {}",
        froms[0]
    );
    let runtime = froms.last().unwrap();
    assert!(
        runtime.contains("debian:bookworm-slim") || runtime.contains("distroless/cc"),
        "runtime: {runtime}"
    );

    // Only the runtime stage from here on.
    let last_from = ins.iter().rposition(|(k, _)| k == "FROM").unwrap();
    let runtime_ins = &ins[last_from..];

    // The build context: every COPY source exists and is let through the ignore file.
    let ignore = read("deploy/Containerfile.dockerignore");
    let allowed: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .map(|p| p.trim_end_matches('/'))
        .collect();
    let mut copied = Vec::new(); // (source, destination) of the runtime stage
    let mut build_sources = Vec::new(); // what the build stage copies
    for (i, (k, v)) in ins.iter().enumerate() {
        if k != "COPY" || v.contains("--from=") {
            continue;
        }
        let words: Vec<&str> = v
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let (dest, sources) = words.split_last().unwrap();
        for s in sources {
            let path = root().join(s);
            assert!(
                path.exists(),
                "{CONTAINERFILE}: COPY {s}: not in the repository"
            );
            assert!(
                covers(&allowed, s),
                "{CONTAINERFILE}: COPY {s} is excluded by Containerfile.dockerignore"
            );
            if i > last_from {
                copied.push((s.to_string(), dest.to_string()));
            } else {
                build_sources.push(s.trim_end_matches('/'));
            }
        }
    }

    // Everything the crate compiles in (include_str!/include_bytes!) is in the build stage.
    for inc in compiled_in_files() {
        assert!(
            covers(&build_sources, &inc),
            "{CONTAINERFILE}: the build compiles in {inc}, which the build stage does not COPY \
             (it copies {build_sources:?})"
        );
    }

    // The configuration's relative geodb/ paths resolve from the image's working directory.
    let workdir = runtime_ins
        .iter()
        .rev()
        .find(|(k, _)| k == "WORKDIR")
        .map(|(_, v)| v.trim_end_matches('/').to_string())
        .expect("WORKDIR in the runtime stage");
    let config = read("config/steerd.toml");
    for key in ["database", "countries"] {
        let rel = config
            .lines()
            .find_map(|l| l.trim().strip_prefix(key)?.trim().strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("config/steerd.toml: [geo] {key}"));
        let (dir, file) = rel.rsplit_once('/').unwrap();
        let want_dest = format!("{workdir}/{dir}/");
        assert!(
            copied.iter().any(|(s, d)| s == &rel && *d == want_dest),
            "{CONTAINERFILE}: {rel} (config [geo] {key}) is not copied to {want_dest}{file}: {copied:?}"
        );
    }

    // Ports, a non-root numeric user, and a command line steerd accepts.
    let expose: Vec<&str> = runtime_ins
        .iter()
        .filter(|(k, _)| k == "EXPOSE")
        .flat_map(|(_, v)| v.split_whitespace())
        .collect();
    for port in ["53/udp", "53/tcp"] {
        assert!(expose.contains(&port), "EXPOSE {port}: {expose:?}");
    }
    assert!(
        expose.contains(&"8053") || expose.contains(&"8053/tcp"),
        "EXPOSE 8053: {expose:?}"
    );
    let user = runtime_ins
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, v)| v.clone())
        .expect("USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric USER");
    assert!(uid != 0, "USER root");
    let entry = runtime_ins
        .iter()
        .find(|(k, _)| k == "ENTRYPOINT")
        .expect("ENTRYPOINT");
    let cmd = runtime_ins.iter().find(|(k, _)| k == "CMD").expect("CMD");
    let entry = json_args("ENTRYPOINT", &entry.1);
    assert_eq!(entry, ["/usr/local/bin/steerd"]);
    let cmd = json_args("CMD", &cmd.1);
    check_command_line("Containerfile CMD", &cmd);
    assert!(
        cmd.windows(2)
            .any(|w| w[0] == "--dns-listen" && w[1] == "0.0.0.0:53"),
        "CMD listens on port 53: {cmd:?}"
    );
}

// ------------------------------------------------------------------------------------------------
// Kubernetes

/// The value lines of a YAML block scalar `key: |`, dedented.
fn block_scalar(text: &str, key: &str) -> String {
    let mut lines = text.lines();
    let start = lines
        .by_ref()
        .find(|l| l.trim() == format!("{key}: |"))
        .unwrap_or_else(|| panic!("no `{key}: |`"));
    let key_indent = start.len() - start.trim_start().len();
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > key_indent)
        .collect();
    let indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap();
    body.iter()
        .map(|l| if l.len() >= indent { &l[indent..] } else { "" })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A YAML flow or block list of strings following `key:` (e.g. a container's `args`).
fn yaml_list(text: &str, key: &str) -> Vec<String> {
    let mut lines = text.lines();
    let start = lines
        .by_ref()
        .find(|l| l.trim() == format!("{key}:"))
        .unwrap_or_else(|| panic!("no `{key}:`"));
    let indent = start.len() - start.trim_start().len();
    lines
        .take_while(|l| {
            l.len() - l.trim_start().len() >= indent && l.trim_start().starts_with("- ")
        })
        .map(|l| l.trim_start()[2..].trim().trim_matches('"').to_string())
        .collect()
}

fn k8s_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(root().join(K8S))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn kubernetes_manifests_are_consistent() {
    let files = k8s_files();
    let get = |name: &str| -> &str {
        &files
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{K8S}/{name} missing"))
            .1
    };

    // kustomization.yaml lists files that exist.
    let resources = yaml_list(get("kustomization.yaml"), "resources");
    for r in [
        "namespace.yaml",
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
        "pdb.yaml",
    ] {
        assert!(resources.iter().any(|x| x == r), "kustomization: {r}");
    }
    for r in &resources {
        assert!(
            root().join(K8S).join(r).exists(),
            "kustomization: {r} missing"
        );
    }

    // Services: DNS on 53 over UDP and TCP (LoadBalancer), admin on 8053 (ClusterIP).
    let svc = get("service.yaml");
    let port = |port: u16, proto: &str| {
        matches_lines(
            svc,
            &format!(
                r"^\s*port: {port}\s*\n\s*targetPort: [a-z0-9-]+\s*\n\s*protocol: {proto}\s*$"
            ),
        )
    };
    assert!(port(53, "UDP"), "service: 53/UDP");
    assert!(port(53, "TCP"), "service: 53/TCP");
    assert!(port(8053, "TCP"), "service: 8053/TCP");
    assert!(svc.contains("type: LoadBalancer") && svc.contains("type: ClusterIP"));
    assert!(
        svc.contains("externalTrafficPolicy: Local"),
        "keep the resolvers' addresses"
    );

    // Deployment: ports, replicas, security context, probes, scrape annotations.
    let dep = get("deployment.yaml");
    let cport = |port: u16, proto: &str| {
        matches_lines(
            dep,
            &format!(r"^\s*containerPort: {port}\s*\n\s*protocol: {proto}\s*$"),
        )
    };
    assert!(
        cport(53, "UDP") && cport(53, "TCP") && cport(8053, "TCP"),
        "container ports"
    );
    let replicas: u32 = regex::Regex::new(r"(?m)^\s*replicas: (\d+)")
        .unwrap()
        .captures(dep)
        .expect("replicas")[1]
        .parse()
        .unwrap();
    assert!(replicas >= 2, "replicas {replicas}");
    for want in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        r#"drop: ["ALL"]"#,
        r#"add: ["NET_BIND_SERVICE"]"#,
        "name: net.ipv4.ip_unprivileged_port_start",
        "type: RuntimeDefault",
        "tcpSocket:",
        "readinessProbe:",
        "livenessProbe:",
        r#"prometheus.io/scrape: "true""#,
        r#"prometheus.io/port: "8053""#,
        "name: steerd-config",
        "name: steerd-tokens",
        "mountPath: /var/lib/steerd",
    ] {
        assert!(dep.contains(want), "deployment.yaml: no `{want}`");
    }
    let args = yaml_list(dep, "args");
    check_command_line("deployment.yaml args", &args);
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--config" && w[1] == "/var/lib/steerd/steerd.toml"),
        "deployment serves the writable copy: {args:?}"
    );
    let seed = yaml_list(dep, "command").join(" ");
    assert!(
        seed.contains("/etc/steerd/steerd.toml") && seed.contains("/var/lib/steerd/steerd.toml"),
        "the init container copies the ConfigMap into the state volume: {seed}"
    );
    assert!(get("pdb.yaml").contains("kind: PodDisruptionBudget"));
}

/// The ConfigMap's steerd.toml passes `steerd check-config`, listens where the Services point,
/// and takes its tokens from variables the Deployment sets.
#[test]
fn kubernetes_configmap_passes_check_config() {
    let files = k8s_files();
    let cm = &files.iter().find(|(n, _)| n == "configmap.yaml").unwrap().1;
    let toml = block_scalar(cm, "steerd.toml");
    assert!(toml.contains(r#"dns_listen = ["0.0.0.0:53"]"#), "{toml}");
    assert!(toml.contains(r#"admin_listen = "0.0.0.0:8053""#), "{toml}");

    let dep = &files
        .iter()
        .find(|(n, _)| n == "deployment.yaml")
        .unwrap()
        .1;
    let env_re = regex::Regex::new(r#"token_env = "([A-Z0-9_]+)""#).unwrap();
    let vars: Vec<String> = env_re
        .captures_iter(&toml)
        .map(|c| c[1].to_string())
        .collect();
    assert!(!vars.is_empty(), "tokens from the environment");
    for v in &vars {
        assert!(
            dep.contains(&format!("- name: {v}")),
            "deployment.yaml does not set {v}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("steerd.toml");
    std::fs::write(&file, &toml).unwrap();
    let mut cmd = Command::new(BIN);
    // The image's working directory holds geodb/ as the repository root does.
    cmd.arg("check-config").arg(&file).current_dir(root());
    for v in &vars {
        cmd.env(v, "test-token-0123456789abcdef");
    }
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "check-config of the ConfigMap: {}",
        show(&out)
    );
}

/// Every YAML file parses (Debian's python3 with PyYAML), and the Kubernetes manifests build
/// with kubectl's kustomize.
#[test]
fn kubernetes_yaml_parses_and_kustomize_builds() {
    let py = Command::new(PYTHON).args(["-c", "import yaml"]).output();
    assert!(
        py.is_ok_and(|o| o.status.success()),
        "{PYTHON} cannot import yaml: run `bash .ci/run` (it installs the Debian package python3-yaml)"
    );
    {
        let script = "import sys, yaml\n\
                      for f in sys.argv[1:]:\n    \
                      docs = [d for d in yaml.safe_load_all(open(f)) if d]\n    \
                      assert docs and all('kind' in d or 'groups' in d or 'tests' in d or 'scrape_configs' in d for d in docs), f\n";
        let mut cmd = Command::new(PYTHON);
        cmd.args(["-c", script]).current_dir(root());
        for (name, _) in k8s_files() {
            cmd.arg(format!("{K8S}/{name}"));
        }
        cmd.args([RULES, RULES_TEST, PROM_CONFIG]);
        let out = run(&mut cmd);
        assert!(out.status.success(), "PyYAML: {}", show(&out));
    }
    need("kubectl", "--help", "kubernetes-client");
    let out = run(Command::new("kubectl")
        .args(["kustomize", K8S])
        .current_dir(root()));
    assert!(out.status.success(), "kubectl kustomize: {}", show(&out));
}

/// Debian's interpreter (the one python3-yaml installs for), whatever `python3` is on PATH.
const PYTHON: &str = "/usr/bin/python3";
