//! Validation of the prober's configuration: `[probe]` and each target's `[targets.check]` (with
//! `[targets.check.content]` and `[targets.check.cache]`). One test per rule: the error names the
//! field, the line it is on and says why; then the checks that valid settings produce (levels,
//! where to connect, the HTTP request, timing) and the demo configuration.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use steerd::config::check::{
    CheckSpec, Connect, ContentMatch, ContentSpec, HttpSpec, StatusMatch, Timing,
};
use steerd::config::{self, ConfigIssue, ValidConfig};
use steerd::health::Level;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// One zone and no GeoIP database; targets and `[probe]` are appended by each test.
fn base() -> String {
    format!(
        "\n{}{}",
        common::config::NO_GEODB,
        common::config::zone("example.com")
    )
}

/// A CNAME target named `name` with the given `[targets.check]` body (plain keys first, then any
/// `[targets.check.content]` / `[targets.check.cache]` tables).
fn cname_target(name: &str, check: &str) -> String {
    format!(
        "\n[[targets]]\nname = \"{name}\"\ncname = \"{name}.cdn.example.net\"\n\n[targets.check]\n{check}\n"
    )
}

/// An address target (192.0.2.1 and 2001:db8::1) named `name` with the given check body.
fn addr_target(name: &str, check: &str) -> String {
    format!(
        "\n[[targets]]\nname = \"{name}\"\na = [\"192.0.2.1\"]\naaaa = [\"2001:db8::1\"]\n\n[targets.check]\n{check}\n"
    )
}

/// A `[probe]` table with the given body.
fn probe(body: &str) -> String {
    format!("\n[probe]\n{body}\n")
}

fn text(extra: &str) -> String {
    format!("{}{extra}", base())
}

/// The base + `extra`, which must be valid.
fn valid(extra: &str) -> ValidConfig {
    let text = text(extra);
    config::parse(&text, "test.toml")
        .unwrap_or_else(|e| panic!("config should be valid: {e}\n---\n{text}"))
}

/// The check of the configuration's target `name`.
fn check_of(cfg: &ValidConfig, name: &str) -> Arc<CheckSpec> {
    cfg.targets
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no target {name}"))
        .check
        .clone()
        .unwrap_or_else(|| panic!("target {name} has no check"))
}

/// The check of a configuration holding one target, "t".
fn spec(extra: &str) -> Arc<CheckSpec> {
    check_of(&valid(extra), "t")
}

/// The base + `extra`, which must be rejected: every issue.
fn issues(extra: &str) -> Vec<ConfigIssue> {
    let text = text(extra);
    match config::parse(&text, "test.toml") {
        Ok(_) => panic!("config should be rejected:\n{text}"),
        Err(e) => {
            assert_eq!(e.source, "test.toml");
            e.issues
        }
    }
}

/// 1-based number of the one line of the base + `extra` that contains `marker`.
fn line_of(extra: &str, marker: &str) -> usize {
    let text = text(extra);
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(marker))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "{marker:?} should be on exactly one line of:\n{text}"
    );
    hits[0]
}

/// The issue on `field` among `all` (exactly one), whose message contains `needle`.
fn find(all: &[ConfigIssue], field: &str, needle: &str) -> ConfigIssue {
    let hits: Vec<&ConfigIssue> = all.iter().filter(|i| i.field == field).collect();
    assert_eq!(hits.len(), 1, "expected one issue on {field}: {all:#?}");
    assert!(
        hits[0].message.contains(needle),
        "message for {field} should mention {needle:?}: {:?}",
        hits[0].message
    );
    hits[0].clone()
}

/// `extra` is rejected with exactly one issue: on `field`, mentioning `needle`, reported on the
/// line containing `at`.
fn only_issue(extra: &str, field: &str, needle: &str, at: &str) -> ConfigIssue {
    let all = issues(extra);
    assert_eq!(all.len(), 1, "expected only an issue on {field}: {all:#?}");
    let i = find(&all, field, needle);
    assert_eq!(i.line, Some(line_of(extra, at)), "line of {i:?}");
    i
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// [probe]
// ---------------------------------------------------------------------------------------------

#[test]
fn probe_defaults_without_a_probe_table() {
    let cfg = valid(&cname_target("t", ""));
    let p = &cfg.probe;
    assert_eq!(p.vantage, "local");
    assert_eq!(p.concurrency, 64);
    assert_eq!(p.defaults, Timing::default());
    assert_eq!(p.defaults.interval, secs(10.0));
    assert_eq!(p.defaults.timeout, secs(2.0));
    assert_eq!(p.defaults.jitter, 0.1);
    assert_eq!(p.defaults.confirm, 3);
    assert_eq!(p.defaults.confirm_gap, secs(0.1));
    assert_eq!(p.defaults.heartbeat, secs(1.0));
    assert!(p.resolvers.is_empty());
    assert_eq!(p.cert_warning_days, 14);
    assert_eq!(p.ca_file, None);
    let c = check_of(&cfg, "t");
    assert_eq!(c.timing, Timing::default());
    assert_eq!(c.cert_warning_days, 14);
}

#[test]
fn interval_below_one_second() {
    let extra = probe("interval = 0.5");
    only_issue(
        &extra,
        "probe.interval",
        "between 1 and 86400 (got 0.5)",
        "interval = 0.5",
    );
    let extra = addr_target("t", "port = 80\ninterval = 0.25");
    only_issue(
        &extra,
        "targets[0].check.interval",
        "between 1 and 86400 (got 0.25)",
        "interval = 0.25",
    );
}

#[test]
fn explicit_probe_timeout_not_shorter_than_the_interval() {
    let extra = probe("interval = 5\ntimeout = 5");
    only_issue(
        &extra,
        "probe.timeout",
        "must be shorter than the interval (5 s >= 5 s)",
        "timeout = 5",
    );
    let extra = probe("interval = 1\ntimeout = 2");
    only_issue(
        &extra,
        "probe.timeout",
        "shorter than the interval (2 s >= 1 s)",
        "timeout = 2",
    );
}

/// A `[probe]` timeout error is reported once, on `probe.timeout`, not again on every target
/// that inherits the two values (they write neither key).
#[test]
fn probe_timeout_error_is_not_repeated_on_inheriting_targets() {
    let extra = format!(
        "{}{}",
        probe("interval = 5\ntimeout = 5"),
        addr_target("t", "port = 80")
    );
    only_issue(
        &extra,
        "probe.timeout",
        "must be shorter than the interval",
        "timeout = 5",
    );
}

#[test]
fn explicit_target_timeout_not_shorter_than_the_interval() {
    // Both set on the target.
    let extra = addr_target("t", "port = 80\ninterval = 3\ntimeout = 4");
    only_issue(
        &extra,
        "targets[0].check.timeout",
        "the timeout must be shorter than the interval (4 s >= 3 s)",
        "timeout = 4",
    );
    // The target's timeout against the [probe] interval.
    let extra = format!(
        "{}{}",
        probe("interval = 5"),
        addr_target("t", "port = 80\ntimeout = 7")
    );
    only_issue(
        &extra,
        "targets[0].check.timeout",
        "(7 s >= 5 s)",
        "timeout = 7",
    );
    // The [probe] timeout, set explicitly, against the target's interval: the interval is blamed.
    let extra = format!(
        "{}{}",
        probe("timeout = 5"),
        addr_target("t", "port = 80\ninterval = 4")
    );
    only_issue(
        &extra,
        "targets[0].check.interval",
        "the timeout must be shorter than the interval (5 s >= 4 s)",
        "interval = 4",
    );
}

#[test]
fn default_timeout_shrinks_to_half_a_short_interval() {
    // [probe] interval = 1 s: the default 2 s timeout gives way to 0.5 s, no error.
    let cfg = valid(&format!(
        "{}{}",
        probe("interval = 1"),
        addr_target("t", "port = 80")
    ));
    assert_eq!(cfg.probe.defaults.interval, secs(1.0));
    assert_eq!(cfg.probe.defaults.timeout, secs(0.5));
    let c = check_of(&cfg, "t");
    assert_eq!(c.timing.interval, secs(1.0));
    assert_eq!(c.timing.timeout, secs(0.5));

    // A target's own short interval: 1.5 s → 0.75 s.
    let c = spec(&addr_target("t", "port = 80\ninterval = 1.5"));
    assert_eq!(c.timing.interval, secs(1.5));
    assert_eq!(c.timing.timeout, secs(0.75));

    // interval = 2: half of it (1 s) is shorter than 2 s.
    let c = spec(&addr_target("t", "port = 80\ninterval = 2"));
    assert_eq!(c.timing.timeout, secs(1.0));

    // A long interval keeps the 2 s default.
    let c = spec(&addr_target("t", "port = 80\ninterval = 60"));
    assert_eq!(c.timing.timeout, secs(2.0));
}

/// docs/config.md: the default timeout is "`2` (or half the interval, when that is shorter)", so
/// an interval of 3 s gets 1.5 s, at [probe] and per target.
#[test]
fn default_timeout_is_half_the_interval_whenever_that_is_below_two_seconds() {
    let cfg = valid(&format!(
        "{}{}",
        probe("interval = 3"),
        addr_target("t", "port = 80")
    ));
    assert_eq!(cfg.probe.defaults.timeout, secs(1.5));
    assert_eq!(check_of(&cfg, "t").timing.timeout, secs(1.5));
    let c = spec(&addr_target("t", "port = 80\ninterval = 3"));
    assert_eq!(c.timing.timeout, secs(1.5));
}

/// The default timeout follows each target's own interval: a short [probe] interval must not
/// shrink the timeout of a target that sets a long one (no timeout set anywhere).
#[test]
fn default_timeout_follows_the_targets_own_interval() {
    let cfg = valid(&format!(
        "{}{}",
        probe("interval = 1"),
        addr_target("t", "port = 80\ninterval = 20")
    ));
    assert_eq!(cfg.probe.defaults.timeout, secs(0.5));
    let c = check_of(&cfg, "t");
    assert_eq!(c.timing.interval, secs(20.0));
    assert_eq!(c.timing.timeout, secs(2.0));
}

#[test]
fn jitter_outside_zero_to_half() {
    let extra = probe("jitter = 0.6");
    only_issue(
        &extra,
        "probe.jitter",
        "between 0 and 0.5 (got 0.6)",
        "jitter = 0.6",
    );
    let extra = probe("jitter = -0.1");
    only_issue(
        &extra,
        "probe.jitter",
        "between 0 and 0.5 (got -0.1)",
        "jitter = -0.1",
    );
    let extra = addr_target("t", "port = 80\njitter = 1.0");
    only_issue(
        &extra,
        "targets[0].check.jitter",
        "fraction of the interval between 0 and 0.5",
        "jitter = 1.0",
    );
    // The bounds themselves are accepted.
    assert_eq!(
        spec(&addr_target("t", "port = 80\njitter = 0.5"))
            .timing
            .jitter,
        0.5
    );
    assert_eq!(
        spec(&addr_target("t", "port = 80\njitter = 0"))
            .timing
            .jitter,
        0.0
    );
}

#[test]
fn confirm_above_ten() {
    let extra = probe("confirm = 11");
    only_issue(
        &extra,
        "probe.confirm",
        "at most 10 confirmation re-checks (got 11)",
        "confirm = 11",
    );
    let extra = addr_target("t", "port = 80\nconfirm = 50");
    only_issue(
        &extra,
        "targets[0].check.confirm",
        "at most 10 confirmation re-checks (got 50)",
        "confirm = 50",
    );
    assert_eq!(
        spec(&addr_target("t", "port = 80\nconfirm = 10"))
            .timing
            .confirm,
        10
    );
    assert_eq!(
        spec(&addr_target("t", "port = 80\nconfirm = 0"))
            .timing
            .confirm,
        0
    );
    // Negative: a type error, still on the field.
    let all = issues(&probe("confirm = -1"));
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].field, "probe.confirm", "{all:#?}");
    assert!(all[0].line.is_some(), "{all:#?}");
}

#[test]
fn confirm_gap_must_be_a_number_of_seconds() {
    let extra = probe("confirm_gap = -1");
    only_issue(
        &extra,
        "probe.confirm_gap",
        "between 0 and 86400 (got -1)",
        "confirm_gap = -1",
    );
}

#[test]
fn heartbeat_is_zero_or_at_least_a_tenth_of_a_second() {
    only_issue(
        &probe("heartbeat = 0.05"),
        "probe.heartbeat",
        "between 0.1 and 86400 (got 0.05)",
        "heartbeat = 0.05",
    );
    let cfg = valid(&format!(
        "{}{}",
        probe("heartbeat = 0"),
        addr_target("t", "port = 80\nheartbeat = 2.5")
    ));
    assert_eq!(cfg.probe.defaults.heartbeat, Duration::ZERO);
    assert_eq!(check_of(&cfg, "t").timing.heartbeat, secs(2.5));
}

#[test]
fn bad_resolver_address() {
    let extra = probe("resolvers = [\n  \"192.0.2.53\",\n  \"dns.example.net\",\n]");
    only_issue(
        &extra,
        "probe.resolvers[1]",
        "\"dns.example.net\" is not an address (\"ip\" or \"ip:port\")",
        "\"dns.example.net\",",
    );
    let extra = addr_target("t", "port = 80\nresolvers = [\"192.0.2.53:99999\"]");
    only_issue(
        &extra,
        "targets[0].check.resolvers[0]",
        "is not an address",
        "resolvers = ",
    );
}

#[test]
fn resolver_given_as_a_bare_ip_gets_port_53() {
    let cfg = valid(&format!(
        "{}{}{}",
        probe(
            "resolvers = [\"192.0.2.53\", \"2001:db8::53\", \"192.0.2.54:5353\", \"[2001:db8::54]:5300\"]"
        ),
        addr_target("t", "port = 80"),
        addr_target("u", "port = 80\nresolvers = [\" 198.51.100.1 \"]"),
    ));
    let expect = vec![
        sa("192.0.2.53:53"),
        sa("[2001:db8::53]:53"),
        sa("192.0.2.54:5353"),
        sa("[2001:db8::54]:5300"),
    ];
    assert_eq!(cfg.probe.resolvers, expect);
    // Inherited by a target that sets none, replaced by a target's own list.
    assert_eq!(check_of(&cfg, "t").resolvers, expect);
    assert_eq!(check_of(&cfg, "u").resolvers, vec![sa("198.51.100.1:53")]);
}

#[test]
fn bad_vantage() {
    let extra = probe("vantage = \"\"");
    only_issue(
        &extra,
        "probe.vantage",
        "must be a non-empty name",
        "vantage = ",
    );
    let extra = probe("vantage = \"   \"");
    only_issue(&extra, "probe.vantage", "non-empty", "vantage = ");
    let extra = probe(&format!("vantage = \"{}\"", "v".repeat(65)));
    only_issue(&extra, "probe.vantage", "at most 64", "vantage = ");
    let cfg = valid(&probe("vantage = \" fra-1 \""));
    assert_eq!(cfg.probe.vantage, "fra-1");
}

#[test]
fn concurrency_zero() {
    let extra = probe("concurrency = 0");
    only_issue(
        &extra,
        "probe.concurrency",
        "must be between 1 and 100000 (got 0)",
        "concurrency = 0",
    );
    let extra = probe("concurrency = 100001");
    only_issue(
        &extra,
        "probe.concurrency",
        "(got 100001)",
        "concurrency = 100001",
    );
    assert_eq!(valid(&probe("concurrency = 1")).probe.concurrency, 1);
}

#[test]
fn unknown_keys_in_probe_and_check_are_rejected() {
    let e = config::parse(&text(&probe("intervall = 5")), "test.toml").unwrap_err();
    assert!(
        e.issues[0].message.contains("unknown field `intervall`"),
        "{e}"
    );
    assert_eq!(
        e.issues[0].line,
        Some(line_of(&probe("intervall = 5"), "intervall")),
        "{e}"
    );

    let extra = addr_target("t", "port = 80\ntimout = 1");
    let e = config::parse(&text(&extra), "test.toml").unwrap_err();
    assert!(
        e.issues[0].message.contains("unknown field `timout`"),
        "{e}"
    );
    assert!(e.issues[0].field.starts_with("targets[0].check"), "{e}");

    let extra = addr_target(
        "t",
        "url = \"http://x.example/\"\n[targets.check.content]\nsha = \"00\"",
    );
    let e = config::parse(&text(&extra), "test.toml").unwrap_err();
    assert!(e.issues[0].message.contains("unknown field `sha`"), "{e}");
    assert!(
        e.issues[0].field.starts_with("targets[0].check.content"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// [targets.check]: the URL and the HTTP request
// ---------------------------------------------------------------------------------------------

#[test]
fn url_with_another_scheme() {
    let extra = addr_target("t", "url = \"ftp://www.example.com/health\"");
    only_issue(
        &extra,
        "targets[0].check.url",
        "\"ftp://www.example.com/health\" must start with http:// or https://",
        "url = ",
    );
}

/// A URL written without its scheme (the most likely slip) is told what is expected, not just
/// "invalid format".
#[test]
fn url_without_a_scheme_says_what_is_expected() {
    let extra = addr_target("t", "url = \"www.example.com/health\"");
    only_issue(
        &extra,
        "targets[0].check.url",
        "must start with http:// or https://",
        "url = ",
    );
}

#[test]
fn url_without_host() {
    for url in ["http://:8080/health", "https://:443/"] {
        let extra = addr_target("t", &format!("url = \"{url}\""));
        only_issue(
            &extra,
            "targets[0].check.url",
            &format!("\"{url}\" has no host"),
            "url = ",
        );
    }
    // A URL that does not parse at all.
    let extra = addr_target("t", "url = \"http://exa mple.com/\"");
    only_issue(&extra, "targets[0].check.url", "is not a URL", "url = ");
}

#[test]
fn method_other_than_get_or_head() {
    let extra = addr_target("t", "url = \"http://www.example.com/\"\nmethod = \"post\"");
    only_issue(
        &extra,
        "targets[0].check.method",
        "\"POST\" is not supported: use GET or HEAD",
        "method = ",
    );
    // Case does not matter for the two accepted ones.
    assert!(
        spec(&addr_target(
            "t",
            "url = \"http://www.example.com/\"\nmethod = \"head\""
        ))
        .http
        .as_ref()
        .unwrap()
        .head
    );
    assert!(
        !spec(&addr_target(
            "t",
            "url = \"http://www.example.com/\"\nmethod = \"Get\""
        ))
        .http
        .as_ref()
        .unwrap()
        .head
    );
}

#[test]
fn head_with_a_content_check() {
    let extra = addr_target(
        "t",
        "url = \"http://www.example.com/\"\nmethod = \"HEAD\"\n[targets.check.content]\ncontains = \"ok\"",
    );
    only_issue(
        &extra,
        "targets[0].check.method",
        "HEAD responses have no body for the content check: use GET",
        "method = ",
    );
}

#[test]
fn bad_expect_status_entries() {
    let extra = addr_target(
        "t",
        "url = \"http://www.example.com/\"\nexpect_status = [\n  200,\n  600,\n  \"6xx\",\n  \"abc\",\n  \"301\",\n  \"2xx\",\n]",
    );
    let all = issues(&extra);
    assert_eq!(all.len(), 3, "{all:#?}");
    for (i, at) in [(1, "600,"), (2, "\"6xx\","), (3, "\"abc\",")] {
        let field = format!("targets[0].check.expect_status[{i}]");
        let issue = find(
            &all,
            &field,
            "expected a status code 100-599 or a class \"1xx\"-\"5xx\"",
        );
        assert_eq!(issue.line, Some(line_of(&extra, at)), "{issue:?}");
    }
    for bad in ["99", "\"0xx\"", "\"2x\"", "\"20x\"", "\"\""] {
        let extra = addr_target(
            "t",
            &format!("url = \"http://www.example.com/\"\nexpect_status = [{bad}]"),
        );
        only_issue(
            &extra,
            "targets[0].check.expect_status[0]",
            "expected a status code",
            "expect_status",
        );
    }
    let extra = addr_target("t", "url = \"http://www.example.com/\"\nexpect_status = []");
    only_issue(
        &extra,
        "targets[0].check.expect_status",
        "at least one accepted status is needed",
        "expect_status",
    );
}

#[test]
fn good_expect_status_entries() {
    let c = spec(&addr_target(
        "t",
        "url = \"http://www.example.com/\"\nexpect_status = [200, \"301\", \"2xx\", \"3XX\", \" 404 \"]",
    ));
    assert_eq!(
        c.http.as_ref().unwrap().expect,
        vec![
            StatusMatch::Code(200),
            StatusMatch::Code(301),
            StatusMatch::Class(2),
            StatusMatch::Class(3),
            StatusMatch::Code(404),
        ]
    );
    // The default: any 2xx.
    let c = spec(&addr_target("t", "url = \"http://www.example.com/\""));
    assert_eq!(c.http.as_ref().unwrap().expect, vec![StatusMatch::Class(2)]);
}

#[test]
fn bad_header_name_or_value() {
    let extra = addr_target(
        "t",
        "url = \"http://www.example.com/\"\nheaders = { \"Bad Header\" = \"x\" }",
    );
    only_issue(
        &extra,
        "targets[0].check.headers.Bad Header",
        "not a valid HTTP header name",
        "headers = ",
    );
    let extra = addr_target(
        "t",
        "url = \"http://www.example.com/\"\n[targets.check.headers]\nX-Token = \"a\\nb\"",
    );
    only_issue(
        &extra,
        "targets[0].check.headers.X-Token",
        "not a valid header value",
        "X-Token = ",
    );
}

#[test]
fn host_header_in_headers() {
    for key in ["Host", "host"] {
        let extra = addr_target(
            "t",
            &format!(
                "url = \"http://www.example.com/\"\nheaders = {{ {key} = \"other.example\" }}"
            ),
        );
        only_issue(
            &extra,
            &format!("targets[0].check.headers.{key}"),
            "the Host header comes from `url`",
            "headers = ",
        );
    }
}

#[test]
fn bad_sni_and_bad_cache_path() {
    let extra = addr_target(
        "t",
        "url = \"https://www.example.com/\"\nsni = \"bad name!\"",
    );
    only_issue(
        &extra,
        "targets[0].check.sni",
        "\"bad name!\" is not a valid TLS server name",
        "sni = ",
    );
    let extra = addr_target(
        "t",
        "url = \"http://www.example.com/\"\n[targets.check.cache]\npath = \"canary.txt\"",
    );
    only_issue(
        &extra,
        "targets[0].check.cache.path",
        "must be an absolute path starting with /",
        "path = ",
    );
}

// ---------------------------------------------------------------------------------------------
// [targets.check.content]
// ---------------------------------------------------------------------------------------------

#[test]
fn content_with_zero_or_two_matchers() {
    let extra = addr_target(
        "t",
        "url = \"http://www.example.com/\"\n[targets.check.content]\nmax_bytes = 100",
    );
    only_issue(
        &extra,
        "targets[0].check.content",
        "set exactly one of `sha256`, `contains`, `regex`",
        "[targets.check.content]",
    );
    let extra = addr_target(
        "t",
        "url = \"http://www.example.com/\"\n[targets.check.content]\ncontains = \"ok\"\nregex = \"o+k\"",
    );
    only_issue(
        &extra,
        "targets[0].check.content",
        "set exactly one of",
        "[targets.check.content]",
    );
}

#[test]
fn bad_sha256_hex() {
    for bad in ["abc", &"zz".repeat(32), &"ab".repeat(33)] {
        let extra = addr_target(
            "t",
            &format!(
                "url = \"http://www.example.com/\"\n[targets.check.content]\nsha256 = \"{bad}\""
            ),
        );
        only_issue(
            &extra,
            "targets[0].check.content.sha256",
            "expected 64 hexadecimal digits (a SHA-256 digest)",
            "sha256 = ",
        );
    }
    let hex = "0123456789abcdef".repeat(4);
    let c = spec(&addr_target(
        "t",
        &format!(
            "url = \"http://www.example.com/\"\n[targets.check.content]\nsha256 = \"{}\"",
            hex.to_uppercase()
        ),
    ));
    let mut digest = [0u8; 32];
    for (i, b) in digest.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    assert_eq!(
        c.content,
        Some(ContentSpec {
            matcher: ContentMatch::Sha256(digest),
            max_bytes: 1 << 20,
        })
    );
}

#[test]
fn invalid_regex() {
    let extra = addr_target(
        "t",
        "url = \"http://www.example.com/\"\n[targets.check.content]\nregex = \"status: (ok\"",
    );
    only_issue(
        &extra,
        "targets[0].check.content.regex",
        "invalid regular expression",
        "regex = ",
    );
    let c = spec(&addr_target(
        "t",
        "url = \"http://www.example.com/\"\n[targets.check.content]\nregex = \"status: (ok|fine)\"",
    ));
    match &c.content.as_ref().unwrap().matcher {
        ContentMatch::Regex(p) => {
            assert_eq!(p.0.as_str(), "status: (ok|fine)");
            assert!(p.0.is_match(b"... status: fine ..."));
        }
        m => panic!("expected a regex matcher, got {m:?}"),
    }
}

#[test]
fn empty_contains() {
    let extra = addr_target(
        "t",
        "url = \"http://www.example.com/\"\n[targets.check.content]\ncontains = \"\"",
    );
    only_issue(
        &extra,
        "targets[0].check.content.contains",
        "must not be empty",
        "contains = ",
    );
}

#[test]
fn max_bytes_zero_or_too_large() {
    let extra = addr_target(
        "t",
        "url = \"http://www.example.com/\"\n[targets.check.content]\ncontains = \"ok\"\nmax_bytes = 0",
    );
    only_issue(
        &extra,
        "targets[0].check.content.max_bytes",
        "must be between 1 and 67108864 (got 0)",
        "max_bytes = 0",
    );
    let extra = addr_target(
        "t",
        "url = \"http://www.example.com/\"\n[targets.check.content]\ncontains = \"ok\"\nmax_bytes = 67108865",
    );
    only_issue(
        &extra,
        "targets[0].check.content.max_bytes",
        "(got 67108865)",
        "max_bytes = ",
    );
    let c = spec(&addr_target(
        "t",
        "url = \"http://www.example.com/\"\n[targets.check.content]\ncontains = \"ok\"\nmax_bytes = 67108864",
    ));
    assert_eq!(
        c.content,
        Some(ContentSpec {
            matcher: ContentMatch::Contains("ok".into()),
            max_bytes: 64 << 20,
        })
    );
}

// ---------------------------------------------------------------------------------------------
// levels
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_level_and_level_listed_twice() {
    let extra = cname_target("t", "levels = [\"dns\", \"ping\"]");
    only_issue(
        &extra,
        "targets[0].check.levels[1]",
        "unknown level \"ping\" (expected dns, tcp, tls, http, content or cache)",
        "levels = ",
    );
    // "check" is the verdict of a run, not a level one can ask for.
    let extra = cname_target("t", "levels = [\"check\"]");
    only_issue(
        &extra,
        "targets[0].check.levels[0]",
        "unknown level \"check\"",
        "levels = ",
    );
    let extra = addr_target("t", "port = 80\nlevels = [\"tcp\", \"tcp\"]");
    only_issue(
        &extra,
        "targets[0].check.levels[1]",
        "level \"tcp\" is listed twice",
        "levels = ",
    );
}

#[test]
fn level_listed_twice_points_at_the_second_entry() {
    let extra = addr_target("t", "port = 80\nlevels = [\n  \"tcp\",\n  \"TCP \",\n]");
    // Levels are trimmed and case-insensitive: "TCP " is tcp again; the issue is on the line of
    // that entry of a multi-line list.
    let all = issues(&extra);
    assert_eq!(all.len(), 1, "{all:#?}");
    find(
        &all,
        "targets[0].check.levels[1]",
        "level \"TCP \" is listed twice",
    );
    assert_eq!(all[0].line, Some(line_of(&extra, "\"TCP \"")));

    let extra = cname_target("t", "levels = [\n  \"dns\",\n  \"dns\",\n]");
    let all = issues(&extra);
    assert_eq!(all.len(), 1, "{all:#?}");
    let i = find(&all, "targets[0].check.levels[1]", "listed twice");
    let text = text(&extra);
    let second = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("\"dns\","))
        .map(|(n, _)| n + 1)
        .nth(1)
        .unwrap();
    assert_eq!(i.line, Some(second));
}

#[test]
fn tls_level_without_https() {
    let extra = addr_target(
        "t",
        "url = \"http://www.example.com/\"\nlevels = [\"tcp\", \"tls\", \"http\"]",
    );
    only_issue(
        &extra,
        "targets[0].check.levels",
        "level \"tls\" needs an https:// `url`",
        "levels = ",
    );
}

#[test]
fn https_url_with_levels_lacking_tls() {
    let extra = addr_target(
        "t",
        "url = \"https://www.example.com/\"\nlevels = [\"tcp\", \"http\"]",
    );
    only_issue(
        &extra,
        "targets[0].check.levels",
        "an https:// url needs the \"tls\" level before \"http\"",
        "levels = ",
    );
    // tcp alone on an https url is fine: it only connects (to the URL's port).
    let c = spec(&addr_target(
        "t",
        "url = \"https://www.example.com/\"\nlevels = [\"tcp\"]",
    ));
    assert_eq!(c.levels, vec![Level::Tcp]);
    assert_eq!(
        c.connect,
        Some(Connect::Addrs(
            vec![ip("192.0.2.1"), ip("2001:db8::1")],
            443
        ))
    );
}

#[test]
fn http_and_tls_levels_need_the_tcp_level() {
    let extra = addr_target(
        "t",
        "url = \"http://www.example.com/\"\nlevels = [\"http\"]",
    );
    only_issue(
        &extra,
        "targets[0].check.levels",
        "level \"http\" needs the \"tcp\" level",
        "levels = ",
    );
    let extra = addr_target(
        "t",
        "url = \"https://www.example.com/\"\nlevels = [\"tls\", \"http\"]",
    );
    let all = issues(&extra);
    assert_eq!(all.len(), 2, "{all:#?}");
    let msgs: Vec<&str> = all.iter().map(|i| i.message.as_str()).collect();
    assert!(
        msgs.contains(&"level \"http\" needs the \"tcp\" level"),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&"level \"tls\" needs the \"tcp\" level"),
        "{msgs:?}"
    );
    assert!(
        all.iter().all(|i| i.field == "targets[0].check.levels"),
        "{all:#?}"
    );
}

#[test]
fn http_level_without_a_url() {
    let extra = addr_target("t", "port = 80\nlevels = [\"tcp\", \"http\"]");
    only_issue(
        &extra,
        "targets[0].check.levels",
        "level \"http\" needs a `url`",
        "levels = ",
    );
}

/// An explicit `content` / `cache` level without `http`: the message names the level that needs
/// http, not http itself.
#[test]
fn content_or_cache_level_without_the_http_level() {
    let extra = addr_target(
        "t",
        "url = \"http://www.example.com/\"\nlevels = [\"tcp\", \"content\"]\n[targets.check.content]\ncontains = \"ok\"",
    );
    only_issue(
        &extra,
        "targets[0].check.levels",
        "level \"content\" needs the \"http\" level",
        "levels = ",
    );
    let extra = addr_target(
        "t",
        "url = \"http://www.example.com/\"\nlevels = [\"tcp\", \"cache\"]\n[targets.check.cache]",
    );
    only_issue(
        &extra,
        "targets[0].check.levels",
        "level \"cache\" needs the \"http\" level",
        "levels = ",
    );
}

/// Content and cache read the http level's response: their tables without a `url` cannot run and
/// are rejected rather than silently ignored.
#[test]
fn content_or_cache_table_without_a_url() {
    let extra = addr_target("t", "port = 80\n[targets.check.content]\ncontains = \"ok\"");
    let all = issues(&extra);
    assert_eq!(all.len(), 1, "{all:#?}");
    let i = find(&all, "targets[0].check.content", "url");
    assert_eq!(i.line, Some(line_of(&extra, "[targets.check.content]")));

    let extra = cname_target("t", "[targets.check.cache]");
    let all = issues(&extra);
    assert_eq!(all.len(), 1, "{all:#?}");
    let i = find(&all, "targets[0].check.cache", "url");
    assert_eq!(i.line, Some(line_of(&extra, "[targets.check.cache]")));
}

#[test]
fn content_level_without_a_content_table() {
    let extra = addr_target(
        "t",
        "url = \"http://www.example.com/\"\nlevels = [\"tcp\", \"http\", \"content\"]",
    );
    only_issue(
        &extra,
        "targets[0].check.levels",
        "level \"content\" needs a [content] table (sha256, contains or regex)",
        "levels = ",
    );
}

#[test]
fn dns_level_without_a_host_on_an_address_target() {
    let extra = addr_target("t", "levels = [\"dns\"]");
    only_issue(
        &extra,
        "targets[0].check.levels",
        "level \"dns\" needs a host name: set `host` (or give the target a `cname`)",
        "levels = ",
    );
    // With `host` it is fine.
    let c = spec(&addr_target(
        "t",
        "levels = [\"dns\"]\nhost = \"Edge.CDN.example.net\"",
    ));
    assert_eq!(c.levels, vec![Level::Dns]);
    assert_eq!(
        c.dns_host.as_ref().map(|n| n.to_string()),
        Some("edge.cdn.example.net.".to_string())
    );
}

#[test]
fn bad_dns_host() {
    let extra = cname_target("t", "host = \"a..b.example\"");
    only_issue(
        &extra,
        "targets[0].check.host",
        "\"a..b.example\" is not a valid domain name",
        "host = ",
    );
}

#[test]
fn tcp_on_a_cname_target_without_dns_or_address() {
    let extra = cname_target("t", "port = 443\nlevels = [\"tcp\"]");
    only_issue(
        &extra,
        "targets[0].check.levels",
        "the tcp level needs an address: set `address`, keep the \"dns\" level, or give the target a/aaaa addresses",
        "levels = ",
    );
    // With `address` it connects there.
    let c = spec(&cname_target(
        "t",
        "address = \"192.0.2.9:443\"\nlevels = [\"tcp\"]",
    ));
    assert_eq!(c.connect, Some(Connect::Fixed(sa("192.0.2.9:443"))));
}

#[test]
fn tcp_level_without_a_port() {
    let extra = addr_target("t", "levels = [\"tcp\"]");
    only_issue(
        &extra,
        "targets[0].check.port",
        "the tcp level needs a port (or a `url`, or an `address`)",
        // No `port` key: the check's table.
        "[targets.check]",
    );
}

// ---------------------------------------------------------------------------------------------
// Where to connect; files
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_address() {
    for bad in ["192.0.2.9", "cdn.example.net:443", "192.0.2.9:99999"] {
        let extra = addr_target("t", &format!("address = \"{bad}\""));
        only_issue(
            &extra,
            "targets[0].check.address",
            &format!("\"{bad}\" is not an \"ip:port\" address"),
            "address = ",
        );
    }
}

#[test]
fn port_zero() {
    let extra = addr_target("t", "port = 0");
    let i = only_issue(
        &extra,
        "targets[0].check.port",
        "port 0 cannot be connected to",
        "port = 0",
    );
    let e = config::parse(&text(&extra), "test.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "test.toml:{}: targets[0].check.port: port 0 cannot be connected to",
            i.line.unwrap()
        )
    );
    // Out of range: a type error on the field.
    let all = issues(&addr_target("t", "port = 65536"));
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].field, "targets[0].check.port", "{all:#?}");
    assert!(all[0].line.is_some(), "{all:#?}");
}

/// Port 0 written in the URL is reported on `url`, the key that holds it (the file has no `port`).
#[test]
fn port_zero_in_the_url_is_reported_on_the_url() {
    let extra = addr_target("t", "url = \"http://www.example.com:0/\"");
    only_issue(&extra, "targets[0].check.url", "port 0", "url = ");
}

#[test]
fn ca_file_missing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let extra = probe(&format!("ca_file = \"{}\"", missing.display()));
    only_issue(
        &extra,
        "probe.ca_file",
        &format!("cannot read {}", missing.display()),
        "ca_file = ",
    );
    let extra = addr_target(
        "t",
        &format!("port = 80\nca_file = \"{}\"", missing.display()),
    );
    only_issue(
        &extra,
        "targets[0].check.ca_file",
        &format!("cannot read {}", missing.display()),
        "ca_file = ",
    );
}

#[test]
fn ca_file_without_a_pem_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let text_file = dir.path().join("notes.txt");
    std::fs::write(&text_file, "this is not a certificate\n").unwrap();
    let key_only = dir.path().join("key.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(&key_only, key.serialize_pem()).unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    for path in [&text_file, &key_only, &empty] {
        let extra = probe(&format!("ca_file = \"{}\"", path.display()));
        only_issue(
            &extra,
            "probe.ca_file",
            &format!("{}: no PEM certificate found", path.display()),
            "ca_file = ",
        );
        let extra = addr_target("t", &format!("port = 80\nca_file = \"{}\"", path.display()));
        only_issue(
            &extra,
            "targets[0].check.ca_file",
            "no PEM certificate found",
            "ca_file = ",
        );
    }
}

#[test]
fn ca_file_with_a_certificate_is_kept_and_inherited() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let cert = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let cfg = valid(&format!(
        "{}{}",
        probe(&format!("ca_file = \"{}\"", ca.display())),
        addr_target("t", "port = 80")
    ));
    assert_eq!(cfg.probe.ca_file, Some(ca.clone()));
    assert_eq!(check_of(&cfg, "t").ca_file, Some(ca));
}

// ---------------------------------------------------------------------------------------------
// Nothing to check; several problems
// ---------------------------------------------------------------------------------------------

#[test]
fn check_with_nothing_to_check() {
    let extra = addr_target("t", "");
    only_issue(
        &extra,
        "targets[0].check",
        "nothing to check: set `url` (http/https checks), `port` or `address` (tcp), or `host` (dns)",
        "[targets.check]",
    );
    // Timing keys alone do not make a check.
    let extra = addr_target("t", "interval = 30\nconfirm = 1");
    only_issue(
        &extra,
        "targets[0].check",
        "nothing to check",
        "[targets.check]",
    );
    // Neither does an empty explicit list of levels, on any kind of target.
    let extra = cname_target("t", "levels = []");
    only_issue(
        &extra,
        "targets[0].check",
        "nothing to check",
        "[targets.check]",
    );
    // An empty check on a CNAME target resolves the CNAME: that is something to check.
    let c = spec(&cname_target("t", ""));
    assert_eq!(c.levels, vec![Level::Dns]);
    assert_eq!(
        c.dns_host.as_ref().map(|n| n.to_string()),
        Some("t.cdn.example.net.".to_string())
    );
    assert_eq!(c.connect, None);
    assert_eq!(c.http, None);
}

#[test]
fn several_problems_are_reported_at_once() {
    let extra = format!(
        "{}{}{}",
        probe("interval = 0.5\njitter = 0.9\nconcurrency = 0"),
        addr_target(
            "t",
            "url = \"https://www.example.com/\"\nmethod = \"PUT\"\nexpect_status = [700]\nheaders = { Host = \"x\" }\n[targets.check.content]\nregex = \"(\""
        ),
        addr_target("u", "port = 0\nconfirm = 99"),
    );
    let all = issues(&extra);
    let expected = [
        ("probe.interval", "got 0.5", "interval = 0.5"),
        ("probe.jitter", "got 0.9", "jitter = 0.9"),
        ("probe.concurrency", "got 0", "concurrency = 0"),
        ("targets[0].check.method", "\"PUT\"", "method = "),
        (
            "targets[0].check.expect_status[0]",
            "status code",
            "expect_status = ",
        ),
        ("targets[0].check.headers.Host", "Host header", "headers = "),
        (
            "targets[0].check.content.regex",
            "invalid regular expression",
            "regex = ",
        ),
        ("targets[1].check.confirm", "got 99", "confirm = 99"),
        ("targets[1].check.port", "port 0", "port = 0"),
    ];
    assert_eq!(all.len(), expected.len(), "{all:#?}");
    for (field, needle, at) in expected {
        let i = find(&all, field, needle);
        assert_eq!(i.line, Some(line_of(&extra, at)), "{i:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Valid checks: levels, connection, request, overrides
// ---------------------------------------------------------------------------------------------

#[test]
fn default_levels_of_a_full_cname_https_check() {
    let c = spec(&cname_target(
        "t",
        "url = \"https://www.example.com/health?probe=1\"\n[targets.check.content]\ncontains = \"ok\"\n[targets.check.cache]\npath = \"/canary.txt\"",
    ));
    assert_eq!(
        c.levels,
        vec![
            Level::Dns,
            Level::Tcp,
            Level::Tls,
            Level::Http,
            Level::Content,
            Level::Cache
        ]
    );
    assert_eq!(
        c.dns_host.as_ref().map(|n| n.to_string()),
        Some("t.cdn.example.net.".to_string())
    );
    assert_eq!(c.connect, Some(Connect::Resolved(443)));
    assert_eq!(
        c.http,
        Some(HttpSpec {
            https: true,
            host_header: "www.example.com".into(),
            sni: "www.example.com".into(),
            path: "/health?probe=1".into(),
            head: false,
            expect: vec![StatusMatch::Class(2)],
            headers: vec![],
            cache_path: Some("/canary.txt".into()),
        })
    );
    assert_eq!(
        c.content,
        Some(ContentSpec {
            matcher: ContentMatch::Contains("ok".into()),
            max_bytes: 1 << 20,
        })
    );
    for l in [Level::Dns, Level::Cache] {
        assert!(c.has(l));
    }
    // A cache table without a path reads the http level's own response.
    let c = spec(&cname_target(
        "t",
        "url = \"https://www.example.com\"\n[targets.check.cache]",
    ));
    assert!(c.has(Level::Cache));
    let h = c.http.as_ref().unwrap();
    assert_eq!(h.cache_path, None);
    assert_eq!(h.path, "/");
}

#[test]
fn default_levels_of_an_address_target_with_an_http_url() {
    let c = spec(&addr_target("t", "url = \"http://www.example.com/health\""));
    assert_eq!(c.levels, vec![Level::Tcp, Level::Http]);
    assert_eq!(c.dns_host, None);
    assert_eq!(
        c.connect,
        Some(Connect::Addrs(vec![ip("192.0.2.1"), ip("2001:db8::1")], 80))
    );
    let h = c.http.as_ref().unwrap();
    assert!(!h.https);
    assert_eq!(h.host_header, "www.example.com");
    assert_eq!(h.path, "/health");
    assert_eq!(c.content, None);
    // `port` alone: a tcp check on that port.
    let c = spec(&addr_target("t", "port = 8443"));
    assert_eq!(c.levels, vec![Level::Tcp]);
    assert_eq!(
        c.connect,
        Some(Connect::Addrs(
            vec![ip("192.0.2.1"), ip("2001:db8::1")],
            8443
        ))
    );
    // `host` alone: a dns check.
    let c = spec(&addr_target("t", "host = \"edge.example.net\""));
    assert_eq!(c.levels, vec![Level::Dns]);
}

#[test]
fn address_connects_to_a_fixed_socket() {
    // On a CNAME target the dns level still runs (default levels), but tcp connects to `address`.
    let c = spec(&cname_target(
        "t",
        "url = \"https://www.example.com/\"\naddress = \"[2001:db8::7]:8443\"",
    ));
    assert_eq!(
        c.levels,
        vec![Level::Dns, Level::Tcp, Level::Tls, Level::Http]
    );
    assert_eq!(c.connect, Some(Connect::Fixed(sa("[2001:db8::7]:8443"))));
    // `address` alone on an address target.
    let c = spec(&addr_target("t", "address = \" 127.0.0.1:8081 \""));
    assert_eq!(c.levels, vec![Level::Tcp]);
    assert_eq!(c.connect, Some(Connect::Fixed(sa("127.0.0.1:8081"))));
    // An explicit port on a CNAME target with the dns level: the resolved address, on that port.
    let c = spec(&cname_target(
        "t",
        "url = \"http://www.example.com/\"\nport = 8080",
    ));
    assert_eq!(c.connect, Some(Connect::Resolved(8080)));
}

#[test]
fn explicit_levels_are_put_in_dependency_order() {
    let c = spec(&cname_target(
        "t",
        "url = \"https://www.example.com/\"\nlevels = [\"http\", \"tls\", \"tcp\", \"dns\"]\n[targets.check.cache]",
    ));
    // Cache is present but not listed: it does not run.
    assert_eq!(
        c.levels,
        vec![Level::Dns, Level::Tcp, Level::Tls, Level::Http]
    );
    assert!(!c.has(Level::Cache));
}

#[test]
fn host_header_carries_a_non_default_port() {
    let c = spec(&addr_target("t", "url = \"http://www.example.com:8080/x\""));
    let h = c.http.as_ref().unwrap();
    assert_eq!(h.host_header, "www.example.com:8080");
    assert_eq!(h.sni, "www.example.com");
    assert_eq!(
        c.connect,
        Some(Connect::Addrs(
            vec![ip("192.0.2.1"), ip("2001:db8::1")],
            8080
        ))
    );
    // The scheme's own port is left out.
    let c = spec(&addr_target("t", "url = \"https://www.example.com:443/x\""));
    assert_eq!(c.http.as_ref().unwrap().host_header, "www.example.com");
    let c = spec(&addr_target("t", "url = \"http://www.example.com:80/x\""));
    assert_eq!(c.http.as_ref().unwrap().host_header, "www.example.com");
    // 443 is not the default of http.
    let c = spec(&addr_target("t", "url = \"http://www.example.com:443/x\""));
    assert_eq!(c.http.as_ref().unwrap().host_header, "www.example.com:443");
    // An IPv6 literal keeps its brackets in the Host header, not in the SNI.
    let c = spec(&addr_target("t", "url = \"https://[2001:db8::5]:8443/\""));
    let h = c.http.as_ref().unwrap();
    assert_eq!(h.host_header, "[2001:db8::5]:8443");
    assert_eq!(h.sni, "2001:db8::5");
}

#[test]
fn request_settings_are_kept() {
    let c = spec(&addr_target(
        "t",
        "url = \"https://www.example.com/\"\nsni = \"edge.cdn.example.net\"\nmethod = \"HEAD\"\nheaders = { \"X-Probe\" = \"1\", \"User-Agent\" = \"custom\" }",
    ));
    let h = c.http.as_ref().unwrap();
    assert!(h.https);
    assert!(h.head);
    assert_eq!(h.host_header, "www.example.com");
    assert_eq!(h.sni, "edge.cdn.example.net");
    assert_eq!(
        h.headers,
        vec![
            ("User-Agent".to_string(), "custom".to_string()),
            ("X-Probe".to_string(), "1".to_string()),
        ]
    );
}

#[test]
fn per_target_overrides_of_probe_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let other = dir.path().join("other.pem");
    for p in [&ca, &other] {
        let cert = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
        std::fs::write(p, cert.cert.pem()).unwrap();
    }
    let cfg = valid(&format!(
        "{}{}{}",
        probe(&format!(
            "vantage = \"fra\"\nconcurrency = 8\ninterval = 30\ntimeout = 5\njitter = 0.2\nconfirm = 5\nconfirm_gap = 0.5\nresolvers = [\"192.0.2.53\"]\ncert_warning_days = 30\nca_file = \"{}\"",
            ca.display()
        )),
        addr_target("inherits", "port = 80"),
        addr_target(
            "overrides",
            &format!(
                "port = 80\ninterval = 60\ntimeout = 10\njitter = 0\nconfirm = 0\nconfirm_gap = 2\nwatch = false\nresolvers = [\"192.0.2.54:5353\"]\ncert_warning_days = 7\nca_file = \"{}\"",
                other.display()
            ),
        ),
    ));
    let p = &cfg.probe;
    assert_eq!(p.vantage, "fra");
    assert_eq!(p.concurrency, 8);
    let probe_timing = Timing {
        interval: secs(30.0),
        timeout: secs(5.0),
        jitter: 0.2,
        confirm: 5,
        confirm_gap: secs(0.5),
        watch: true,
        heartbeat: secs(1.0),
    };
    assert_eq!(p.defaults, probe_timing);
    assert_eq!(p.cert_warning_days, 30);

    let c = check_of(&cfg, "inherits");
    assert_eq!(c.timing, probe_timing);
    assert_eq!(c.resolvers, vec![sa("192.0.2.53:53")]);
    assert_eq!(c.cert_warning_days, 30);
    assert_eq!(c.ca_file, Some(ca.clone()));

    let c = check_of(&cfg, "overrides");
    assert_eq!(
        c.timing,
        Timing {
            interval: secs(60.0),
            timeout: secs(10.0),
            jitter: 0.0,
            confirm: 0,
            confirm_gap: secs(2.0),
            watch: false,
            heartbeat: secs(1.0),
        }
    );
    assert_eq!(c.resolvers, vec![sa("192.0.2.54:5353")]);
    assert_eq!(c.cert_warning_days, 7);
    assert_eq!(c.ca_file, Some(other));

    // A partial override keeps the rest of the [probe] values.
    let cfg = valid(&format!(
        "{}{}",
        probe("interval = 30\ntimeout = 5\njitter = 0.2\nconfirm = 5\nconfirm_gap = 0.5"),
        addr_target("t", "port = 80\nconfirm = 1")
    ));
    assert_eq!(
        check_of(&cfg, "t").timing,
        Timing {
            confirm: 1,
            ..probe_timing
        }
    );
}

#[test]
fn targets_without_a_check_are_not_probed() {
    let cfg = valid(
        "\n[[targets]]\nname = \"plain\"\na = [\"192.0.2.1\"]\n\n[[targets]]\nname = \"t\"\ncname = \"t.cdn.example.net\"\n\n[targets.check]\nurl = \"http://www.example.com/\"\n",
    );
    assert_eq!(cfg.targets[0].name, "plain");
    assert!(cfg.targets[0].check.is_none());
    assert!(cfg.targets[1].check.is_some());
    // The second target's issues carry its own index.
    let extra = "\n[[targets]]\nname = \"plain\"\na = [\"192.0.2.1\"]\n\n[[targets]]\nname = \"t\"\ncname = \"t.cdn.example.net\"\n\n[targets.check]\nport = 0\n";
    only_issue(extra, "targets[1].check.port", "port 0", "port = 0");
}

#[test]
fn demo_config_checks_cdn_a_and_cdn_b_only() {
    let cfg = config::load(std::path::Path::new("config/steerd.toml")).expect("demo config valid");
    let names: Vec<&str> = cfg
        .targets
        .iter()
        .filter(|t| t.check.is_some())
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, ["cdn-a", "cdn-b"]);
    assert!(cfg.targets.len() > 2, "the demo has unchecked targets too");
    assert_eq!(cfg.probe.defaults.interval, secs(10.0));
    assert_eq!(cfg.probe.defaults.confirm, 3);
    for (name, port) in [("cdn-a", 8081), ("cdn-b", 8082)] {
        let c = check_of(&cfg, name);
        assert_eq!(
            c.levels,
            vec![Level::Tcp, Level::Http, Level::Cache],
            "{name}"
        );
        assert_eq!(
            c.connect,
            Some(Connect::Fixed(SocketAddr::from(([127, 0, 0, 1], port)))),
            "{name}"
        );
        let h = c.http.as_ref().unwrap();
        assert!(!h.https);
        assert_eq!(h.host_header, "www.example.com");
        assert_eq!(h.path, "/health");
        assert_eq!(c.timing.timeout, secs(2.0));
    }
    assert_eq!(check_of(&cfg, "cdn-a").ca_file, None);
}
