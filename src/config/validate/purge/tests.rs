use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::issues::{ConfigIssue, Context, Issues};
use crate::config::purge::{
    AkamaiNetwork, EdgeMethod, ProviderConfig, PurgeSettings, PurgeTarget, RateLimit, Secret,
};
use crate::config::purge_defaults::for_provider;
use crate::config::schema::{PurgeConfig, PurgeSectionConfig};

#[derive(Deserialize)]
struct Wrap<T> {
    purge: T,
}

/// `[purge]` validated alone, relative paths from `ctx`.
fn settings_in(text: &str, ctx: &Context) -> Result<PurgeSettings, Vec<ConfigIssue>> {
    let p: PurgeSectionConfig = toml::from_str::<Wrap<_>>(text).expect("toml").purge;
    let mut issues = Issues::default();
    let s = super::settings(&p, ctx, &mut issues);
    if issues.is_empty() {
        Ok(s)
    } else {
        Err(issues.into_vec())
    }
}

fn settings(text: &str) -> Result<PurgeSettings, Vec<ConfigIssue>> {
    settings_in(text, &Context::default())
}

/// `[purge]` (as a target's table) validated alone at `targets[0].purge`.
fn target(text: &str) -> Result<PurgeTarget, Vec<ConfigIssue>> {
    let p: PurgeConfig = toml::from_str::<Wrap<_>>(text).expect("toml").purge;
    let mut issues = Issues::default();
    match super::target(&p, "targets[0].purge", &mut issues) {
        Some(t) if issues.is_empty() => Ok(t),
        None if !issues.is_empty() => Err(issues.into_vec()),
        other => panic!("target {other:?} with issues {issues:?}"),
    }
}

fn has(issues: &[ConfigIssue], field: &str, needle: &str) -> bool {
    issues
        .iter()
        .any(|i| i.field == field && i.message.contains(needle))
}

#[track_caller]
fn assert_has(issues: &[ConfigIssue], field: &str, needle: &str) {
    assert!(
        has(issues, field, needle),
        "no issue at {field} with {needle:?} in {issues:#?}"
    );
}

/// Set environment variable `name`; every test uses names of its own.
fn set_env(name: &str, value: &str) {
    // SAFETY: std serializes environment access within Rust; each test writes only variables
    // of its own, which no other test reads, and nothing here calls C's getenv.
    unsafe { std::env::set_var(name, value) }
}

#[test]
fn section_defaults() {
    assert_eq!(settings("purge = {}").unwrap(), PurgeSettings::default());
    let dir = Context {
        dir: Some(PathBuf::from("etc/steerd")),
        serve: true,
    };
    let s = settings_in("purge = {}", &dir).unwrap();
    assert_eq!(s.store, Path::new("etc/steerd/steerd-purges.redb"));
}

#[test]
fn section_parsed() {
    let ctx = Context {
        dir: Some(PathBuf::from("etc/steerd")),
        serve: true,
    };
    let s = settings_in(
        r#"
[purge]
store = "q/purges.redb"
give_up = 600
retry_base = 0.25
retry_max = 30
max_items = 5
keep_finished = 7
[purge.sla]
critical = 2
low = 120
[purge.batch_window]
critical = 0
high = 0.5
"#,
        &ctx,
    )
    .unwrap();
    assert_eq!(s.store, Path::new("etc/steerd/q/purges.redb"));
    let secs = Duration::from_secs_f64;
    assert_eq!(s.sla, [2.0, 10.0, 60.0, 120.0].map(secs));
    assert_eq!(s.batch_window, [0.0, 0.5, 2.0, 10.0].map(secs));
    assert_eq!(s.retry_base, secs(0.25));
    assert_eq!(s.retry_max, secs(30.0));
    assert_eq!(s.give_up, secs(600.0));
    assert_eq!((s.max_items, s.keep_finished), (5, 7));
    // An absolute store is kept as written.
    let s = settings_in("[purge]\nstore = \"/var/lib/steerd/p.redb\"", &ctx).unwrap();
    assert_eq!(s.store, Path::new("/var/lib/steerd/p.redb"));
}

#[test]
fn section_rejects_with_field_paths() {
    let i = settings(
        r#"
[purge]
store = ""
give_up = -1
retry_base = nan
retry_max = inf
max_items = 0
keep_finished = 0
[purge.sla]
critical = 0
high = -2
normal = nan
[purge.batch_window]
critical = 0.1
high = -0.2
low = nan
"#,
    )
    .unwrap_err();
    assert_has(&i, "purge.store", "must name a file");
    assert_has(&i, "purge.give_up", "positive number of seconds (got -1)");
    assert_has(&i, "purge.retry_base", "got NaN");
    assert_has(&i, "purge.retry_max", "got inf");
    assert_has(&i, "purge.max_items", "at least 1");
    assert_has(&i, "purge.keep_finished", "at least 1");
    assert_has(&i, "purge.sla.critical", "positive");
    assert_has(&i, "purge.sla.high", "got -2");
    assert_has(&i, "purge.sla.normal", "got NaN");
    assert_has(
        &i,
        "purge.batch_window.critical",
        "must be 0: critical purges are never batched",
    );
    assert_has(&i, "purge.batch_window.high", "got -0.2");
    assert_has(&i, "purge.batch_window.low", "got NaN");
    assert_eq!(i.len(), 12, "{i:#?}");
}

#[test]
fn section_cross_checks() {
    let i = settings("[purge]\nretry_base = 5\nretry_max = 2\ngive_up = 100").unwrap_err();
    assert_has(
        &i,
        "purge.retry_base",
        "at most purge.retry_max (2 s; got 5 s)",
    );
    assert_has(
        &i,
        "purge.give_up",
        "at least the largest SLA (purge.sla.low = 300 s; got 100 s)",
    );
    // The largest SLA as configured.
    let i = settings("[purge]\ngive_up = 400\n[purge.sla]\nhigh = 500").unwrap_err();
    assert_has(&i, "purge.give_up", "purge.sla.high = 500 s");
    assert!(settings("[purge]\ngive_up = 300").is_ok());
    // A directory is no store.
    let i = settings("[purge]\nstore = \"src/\"").unwrap_err();
    assert_has(&i, "purge.store", "is a directory");
}

#[test]
fn cloudflare_with_defaults() {
    set_env("STEERD_T_CF_TOKEN", "cf-secret-1");
    let t = target(
        r#"
[purge]
provider = "cloudflare"
zone_id = "0123abcd"
token_env = "STEERD_T_CF_TOKEN"
"#,
    )
    .unwrap();
    let d = for_provider("cloudflare").unwrap();
    assert_eq!(
        t.provider,
        ProviderConfig::Cloudflare {
            zone_id: "0123abcd".into(),
            token: Secret::new("cf-secret-1"),
        }
    );
    assert_eq!(t.base_url, d.base_url.trim_end_matches('/'));
    assert_eq!(t.rate, d.rate);
    assert_eq!(t.max_per_request, d.max_per_request);
    assert_eq!(t.timeout, Duration::from_secs(10));
    assert_eq!(t.host, None);
}

#[test]
fn fastly_with_overrides() {
    set_env("STEERD_T_FASTLY_TOKEN", "fastly-secret");
    let t = target(
        r#"
[purge]
provider = "fastly"
service_id = "SU1Z0isxPaozGVKXdv0eY"
token_env = "STEERD_T_FASTLY_TOKEN"
base_url = "http://127.0.0.1:9000/"
rate = 2.5
burst = 4
max_per_request = 10
timeout = 0.5
host = "WWW.Example.com."
"#,
    )
    .unwrap();
    assert_eq!(
        t.provider,
        ProviderConfig::Fastly {
            service_id: "SU1Z0isxPaozGVKXdv0eY".into(),
            token: Secret::new("fastly-secret"),
        }
    );
    assert_eq!(t.base_url, "http://127.0.0.1:9000");
    assert_eq!(
        t.rate,
        RateLimit {
            per_second: 2.5,
            burst: 4.0
        }
    );
    assert_eq!(t.max_per_request, 10);
    assert_eq!(t.timeout, Duration::from_millis(500));
    assert_eq!(t.host.as_deref(), Some("www.example.com"));
}

#[test]
fn akamai_with_defaults() {
    set_env("STEERD_T_AK_CT", "ak-ct");
    set_env("STEERD_T_AK_CS", "ak-cs");
    set_env("STEERD_T_AK_AT", "ak-at");
    let text = r#"
[purge]
provider = "akamai"
base_url = "https://akab-test.purge.akamaiapis.net"
client_token_env = "STEERD_T_AK_CT"
client_secret_env = "STEERD_T_AK_CS"
access_token_env = "STEERD_T_AK_AT"
"#;
    let t = target(text).unwrap();
    let ProviderConfig::Akamai {
        network,
        credentials,
        cp_codes,
    } = &t.provider
    else {
        panic!("{:?}", t.provider)
    };
    assert_eq!(*network, AkamaiNetwork::Production);
    assert_eq!(credentials.client_token.expose(), "ak-ct");
    assert_eq!(credentials.client_secret.expose(), "ak-cs");
    assert_eq!(credentials.access_token.expose(), "ak-at");
    assert!(cp_codes.is_empty());
    let d = for_provider("akamai").unwrap();
    assert_eq!((t.rate, t.max_per_request), (d.rate, d.max_per_request));
    let t = target(&format!(
        "{text}network = \"staging\"\ncp_codes = [123, 456]\n"
    ))
    .unwrap();
    let ProviderConfig::Akamai {
        network, cp_codes, ..
    } = &t.provider
    else {
        panic!("{:?}", t.provider)
    };
    assert_eq!(
        (*network, cp_codes.as_slice()),
        (AkamaiNetwork::Staging, &[123, 456][..])
    );
}

#[test]
fn cloudfront_with_and_without_session_token() {
    set_env("STEERD_T_AWS_ID", "AKIDEXAMPLE");
    set_env("STEERD_T_AWS_KEY", "aws-secret-key");
    set_env("STEERD_T_AWS_SESSION", "aws-session");
    let text = r#"
[purge]
provider = "cloudfront"
distribution_id = "EDFDVBD6EXAMPLE"
access_key_id_env = "STEERD_T_AWS_ID"
secret_access_key_env = "STEERD_T_AWS_KEY"
"#;
    let t = target(text).unwrap();
    let ProviderConfig::Cloudfront {
        distribution_id,
        credentials,
    } = &t.provider
    else {
        panic!("{:?}", t.provider)
    };
    assert_eq!(distribution_id, "EDFDVBD6EXAMPLE");
    assert_eq!(credentials.access_key_id.expose(), "AKIDEXAMPLE");
    assert_eq!(credentials.secret_access_key.expose(), "aws-secret-key");
    assert_eq!(credentials.session_token, None);
    assert_eq!(
        t.max_per_request,
        for_provider("cloudfront").unwrap().max_per_request
    );
    let t = target(&format!(
        "{text}session_token_env = \"STEERD_T_AWS_SESSION\"\n"
    ))
    .unwrap();
    let ProviderConfig::Cloudfront { credentials, .. } = &t.provider else {
        panic!("{:?}", t.provider)
    };
    assert_eq!(credentials.session_token, Some(Secret::new("aws-session")));
}

#[test]
fn http_with_defaults_and_options() {
    let t = target(
        r#"
[purge]
provider = "http"
edges = ["http://10.0.0.1:6081/", "https://10.0.0.2:6443"]
"#,
    )
    .unwrap();
    assert_eq!(
        t.provider,
        ProviderConfig::Http {
            edges: vec![
                "http://10.0.0.1:6081".into(),
                "https://10.0.0.2:6443".into()
            ],
            key_method: EdgeMethod::Ban,
            key_header: "xkey".into(),
            token: None,
        }
    );
    let d = for_provider("http").unwrap();
    assert_eq!((t.rate, t.max_per_request), (d.rate, d.max_per_request));
    assert_eq!(t.base_url, d.base_url);
    set_env("STEERD_T_HTTP_TOKEN", "edge-token");
    let t = target(
        r#"
[purge]
provider = "http"
edges = ["http://127.0.0.1:6081"]
key_method = "purge"
key_header = "Surrogate-Key"
token_env = "STEERD_T_HTTP_TOKEN"
host = "www.example.com"
"#,
    )
    .unwrap();
    assert_eq!(
        t.provider,
        ProviderConfig::Http {
            edges: vec!["http://127.0.0.1:6081".into()],
            key_method: EdgeMethod::Purge,
            key_header: "Surrogate-Key".into(),
            token: Some(Secret::new("edge-token")),
        }
    );
}

#[test]
fn wrong_provider_keys_named_with_their_provider() {
    set_env("STEERD_T_WRONG_TOKEN", "x");
    let i = target(
        r#"
[purge]
provider = "fastly"
service_id = "abc"
token_env = "STEERD_T_WRONG_TOKEN"
zone_id = "z"
network = "staging"
distribution_id = "d"
edges = ["http://10.0.0.1"]
"#,
    )
    .unwrap_err();
    assert_has(
        &i,
        "targets[0].purge.zone_id",
        "only for provider \"cloudflare\"",
    );
    assert_has(
        &i,
        "targets[0].purge.network",
        "only for provider \"akamai\"",
    );
    assert_has(
        &i,
        "targets[0].purge.distribution_id",
        "only for provider \"cloudfront\"",
    );
    assert_has(&i, "targets[0].purge.edges", "only for provider \"http\"");
    assert_eq!(i.len(), 4, "{i:#?}");
    let i = target(
        r#"
[purge]
provider = "akamai"
token_env = "STEERD_T_WRONG_TOKEN"
client_token_env = "STEERD_T_WRONG_TOKEN"
client_secret_env = "STEERD_T_WRONG_TOKEN"
access_token_env = "STEERD_T_WRONG_TOKEN"
"#,
    )
    .unwrap_err();
    assert_has(
        &i,
        "targets[0].purge.token_env",
        "only for providers \"cloudflare\", \"fastly\" and \"http\"",
    );
    let i = target("[purge]\nprovider = \"http\"\nedges = [\"http://a\"]\nbase_url = \"http://b\"")
        .unwrap_err();
    assert_has(
        &i,
        "targets[0].purge.base_url",
        "not used by provider \"http\"",
    );
}

#[test]
fn missing_ids_and_credentials() {
    let i = target("[purge]\nprovider = \"cloudflare\"").unwrap_err();
    assert_has(
        &i,
        "targets[0].purge.zone_id",
        "required for provider \"cloudflare\"",
    );
    assert_has(
        &i,
        "targets[0].purge.token_env",
        "required for provider \"cloudflare\"",
    );
    let i = target("[purge]\nprovider = \"fastly\"\nservice_id = \"a/b\"").unwrap_err();
    assert_has(&i, "targets[0].purge.service_id", "is not an id");
    assert_has(
        &i,
        "targets[0].purge.token_env",
        "required for provider \"fastly\"",
    );
    let i = target("[purge]\nprovider = \"akamai\"").unwrap_err();
    for key in [
        "base_url",
        "client_token_env",
        "client_secret_env",
        "access_token_env",
    ] {
        assert_has(
            &i,
            &format!("targets[0].purge.{key}"),
            "required for provider \"akamai\"",
        );
    }
    let i = target("[purge]\nprovider = \"cloudfront\"").unwrap_err();
    for key in [
        "distribution_id",
        "access_key_id_env",
        "secret_access_key_env",
    ] {
        assert_has(
            &i,
            &format!("targets[0].purge.{key}"),
            "required for provider \"cloudfront\"",
        );
    }
    assert!(!has(&i, "targets[0].purge.session_token_env", ""));
    let i = target("[purge]\nprovider = \"http\"\nedges = []").unwrap_err();
    assert_has(&i, "targets[0].purge.edges", "at least one edge URL");
    let i = target("[purge]\nprovider = \"varnish\"").unwrap_err();
    assert_has(
        &i,
        "targets[0].purge.provider",
        "must be one of \"cloudflare\"",
    );
}

#[test]
fn missing_env_var_names_the_field_and_variable() {
    set_env("STEERD_T_MISSING_EMPTY", "  ");
    let i = target(
        r#"
[purge]
provider = "cloudfront"
distribution_id = "E1"
access_key_id_env = "STEERD_T_MISSING_NEVER_SET"
secret_access_key_env = "STEERD_T_MISSING_EMPTY"
session_token_env = ""
"#,
    )
    .unwrap_err();
    assert_has(
        &i,
        "targets[0].purge.access_key_id_env",
        "environment variable STEERD_T_MISSING_NEVER_SET is not set",
    );
    assert_has(
        &i,
        "targets[0].purge.secret_access_key_env",
        "environment variable STEERD_T_MISSING_EMPTY is not set (or empty)",
    );
    assert_has(
        &i,
        "targets[0].purge.session_token_env",
        "is not an environment variable name",
    );
    assert_eq!(i.len(), 3, "{i:#?}");
}

#[test]
fn bad_urls_limits_and_numbers() {
    let i = target(
        r#"
[purge]
provider = "http"
edges = ["ftp://10.0.0.1", "not a url", "http://u:p@10.0.0.1", "http://10.0.0.3/?a=1", "http://10.0.0.4/", "http://10.0.0.4"]
key_method = "delete"
key_header = "bad header"
max_per_request = 2
rate = -1
burst = 0.5
timeout = nan
host = "bad host"
"#,
    )
    .unwrap_err();
    let f = "targets[0].purge";
    assert_has(
        &i,
        &format!("{f}.edges[0]"),
        "http:// or https:// URL (got scheme \"ftp\")",
    );
    assert_has(&i, &format!("{f}.edges[1]"), "not a valid URL");
    assert_has(&i, &format!("{f}.edges[2]"), "must not carry credentials");
    assert!(!i.iter().any(|x| x.message.contains("u:p")), "{i:#?}");
    assert_has(&i, &format!("{f}.edges[3]"), "query");
    assert_has(
        &i,
        &format!("{f}.edges[5]"),
        "duplicate edge (also targets[0].purge.edges[4])",
    );
    assert_has(
        &i,
        &format!("{f}.key_method"),
        "must be \"ban\", \"purge\" or \"urls\"",
    );
    assert_has(&i, &format!("{f}.key_header"), "not an HTTP header name");
    assert_has(
        &i,
        &format!("{f}.max_per_request"),
        "between 1 and 1, http's limit per request (got 2)",
    );
    assert_has(&i, &format!("{f}.rate"), "got -1");
    assert_has(&i, &format!("{f}.burst"), "at least 1 (got 0.5)");
    assert_has(&i, &format!("{f}.timeout"), "got NaN");
    assert_has(&i, &format!("{f}.host"), "not a valid domain name");
    set_env("STEERD_T_LIMIT_TOKEN", "x");
    let i = target(
        r#"
[purge]
provider = "cloudflare"
zone_id = "z"
token_env = "STEERD_T_LIMIT_TOKEN"
max_per_request = 1001
base_url = "mailto:a@b"
"#,
    )
    .unwrap_err();
    let limit = for_provider("cloudflare").unwrap().max_per_request;
    assert_has(
        &i,
        &format!("{f}.max_per_request"),
        &format!("between 1 and {limit}, cloudflare's limit per request (got 1001)"),
    );
    assert_has(&i, &format!("{f}.base_url"), "http:// or https://");
    let i = target(
        "[purge]\nprovider = \"cloudflare\"\nzone_id = \"z\"\ntoken_env = \"STEERD_T_LIMIT_TOKEN\"\nmax_per_request = 0",
    )
    .unwrap_err();
    assert_has(&i, &format!("{f}.max_per_request"), "got 0");
}

/// Through the whole configuration: the field paths carry the target's index, the valid form
/// carries the settings, and its Debug no credential.
#[test]
fn whole_config_paths_and_no_secret_in_debug() {
    set_env("STEERD_T_DEBUG_CF", "cf-very-secret-value");
    set_env("STEERD_T_DEBUG_AK", "ak-very-secret-value");
    let text = r#"
[purge]
give_up = 7200
[purge.sla]
high = 5

[[targets]]
name = "cdn-a"
cname = "a.cdn.example.net"
[targets.purge]
provider = "cloudflare"
zone_id = "zone1"
token_env = "STEERD_T_DEBUG_CF"

[[targets]]
name = "cdn-b"
cname = "b.cdn.example.net"
[targets.purge]
provider = "akamai"
base_url = "https://akab-test.purge.akamaiapis.net"
client_token_env = "STEERD_T_DEBUG_AK"
client_secret_env = "STEERD_T_DEBUG_AK"
access_token_env = "STEERD_T_DEBUG_AK"

[[targets]]
name = "cdn-c"
cname = "c.cdn.example.net"
"#;
    let v = crate::config::parse(text, "t.toml").unwrap();
    assert_eq!(v.purge.give_up, Duration::from_secs(7200));
    assert_eq!(v.purge.sla[1], Duration::from_secs(5));
    assert_eq!(
        v.targets[0].purge.as_ref().unwrap().provider.name(),
        "cloudflare"
    );
    assert_eq!(
        v.targets[1].purge.as_ref().unwrap().provider.name(),
        "akamai"
    );
    assert!(v.targets[2].purge.is_none());
    let debug = format!("{v:?}");
    assert!(debug.contains("<secret>"));
    assert!(!debug.contains("very-secret-value"));

    let bad = text.replace("client_token_env", "zone_id = \"z\"\nclient_token_env");
    let e = crate::config::parse(&bad, "t.toml").unwrap_err();
    assert!(
        e.issues
            .iter()
            .any(|i| i.field == "targets[1].purge.zone_id"
                && i.message == "only for provider \"cloudflare\""
                && i.line.is_some()),
        "{e}"
    );
    let bad = text.replace("high = 5", "high = 5\nextra = 1");
    let e = crate::config::parse(&bad, "t.toml").unwrap_err();
    assert!(e.to_string().contains("unknown field `extra`"), "{e}");
    let bad = text.replace("zone_id = \"zone1\"", "zone_id = \"zone1\"\nzone = 1");
    let e = crate::config::parse(&bad, "t.toml").unwrap_err();
    assert!(e.to_string().contains("unknown field `zone`"), "{e}");
}

/// A CloudFront target's keys with `extra` appended (credentials of its own).
fn cloudfront_with(extra: &str) -> Result<PurgeTarget, Vec<ConfigIssue>> {
    set_env("STEERD_T_PRICE_KEY_ID", "AKIDPRICE");
    set_env("STEERD_T_PRICE_SECRET", "price-secret");
    target(&format!(
        r#"
[purge]
provider = "cloudfront"
distribution_id = "EDFDVBD6EXAMPLE"
access_key_id_env = "STEERD_T_PRICE_KEY_ID"
secret_access_key_env = "STEERD_T_PRICE_SECRET"
{extra}
"#
    ))
}

#[test]
fn pricing_defaults_per_provider() {
    use crate::config::purge::PriceTier;
    let t = cloudfront_with("").unwrap();
    assert_eq!(
        t.pricing,
        [
            PriceTier {
                up_to: Some(1000),
                per_item: 0.0
            },
            PriceTier {
                up_to: None,
                per_item: 0.005
            }
        ]
    );
    assert_eq!(t.purge_ratio_half, 100.0);
    for p in ["cloudflare", "fastly", "akamai", "http"] {
        assert_eq!(
            crate::config::purge_defaults::pricing(p),
            [PriceTier {
                up_to: None,
                per_item: 0.0
            }],
            "{p}"
        );
    }
}

#[test]
fn pricing_override_parsed() {
    use crate::config::purge::PriceTier;
    let t = cloudfront_with(
        "pricing = [{ up_to = 1000, per_item = 0.0 }, { up_to = 100000, per_item = 0.005 }, { per_item = 0.01 }]\npurge_ratio_half = 2.5",
    )
    .unwrap();
    assert_eq!(t.pricing.len(), 3);
    assert_eq!(
        t.pricing[1],
        PriceTier {
            up_to: Some(100_000),
            per_item: 0.005
        }
    );
    assert_eq!(t.pricing[2].up_to, None);
    assert_eq!(t.purge_ratio_half, 2.5);
}

#[test]
fn pricing_rejected_with_the_field() {
    let f = "targets[0].purge.pricing";
    let e = cloudfront_with("pricing = []").unwrap_err();
    assert_has(&e, f, "at least one tier");
    let e = cloudfront_with("pricing = [{ up_to = 10, per_item = 0.0 }]").unwrap_err();
    assert_has(&e, &format!("{f}[0].up_to"), "the last tier has no bound");
    let e = cloudfront_with("pricing = [{ per_item = 0.0 }, { per_item = 0.01 }]").unwrap_err();
    assert_has(
        &e,
        &format!("{f}[0].up_to"),
        "required in every tier but the last",
    );
    let e = cloudfront_with(
        "pricing = [{ up_to = 100, per_item = 0.0 }, { up_to = 100, per_item = 0.1 }, { per_item = 0.2 }]",
    )
    .unwrap_err();
    assert_has(&e, &format!("{f}[1].up_to"), "bounds ascend");
    let e = cloudfront_with("pricing = [{ up_to = 0, per_item = 0.0 }, { per_item = 0.2 }]")
        .unwrap_err();
    assert_has(&e, &format!("{f}[0].up_to"), "at least 1");
    let e = cloudfront_with("pricing = [{ up_to = 5, per_item = -0.5 }, { }]").unwrap_err();
    assert_has(&e, &format!("{f}[0].per_item"), "at least 0 dollars");
    assert_has(&e, &format!("{f}[1].per_item"), "required");
    let e = cloudfront_with("purge_ratio_half = 0").unwrap_err();
    assert_has(&e, "targets[0].purge.purge_ratio_half", "positive");
}

#[test]
fn canaries_parsed_with_defaults() {
    use crate::config::purge::VersionSource;
    let s = settings(
        r#"
[purge]
verify = true
stale_grace = 5
check_every = 2
demote_stale = true
[[purge.canaries]]
url = "https://www.example.com/app.css?v=1"
origin = "http://origin.example.com:8080"
origin_address = "127.0.0.1:8080"
version = "header:X-Version"
targets = ["cdn-a"]
via = { cdn-a = "127.0.0.1:9000" }
[[purge.canaries]]
url = "http://www.example.com:8000/logo.png"
origin = "https://origin.example.com/"
"#,
    )
    .unwrap();
    let f = &s.freshness;
    assert!(f.verify && f.demote_stale);
    assert_eq!(f.stale_grace, Duration::from_secs(5));
    assert_eq!(f.check_every, Duration::from_secs(2));
    assert_eq!(f.timeout, Duration::from_secs(5));
    let c = &f.canaries[0];
    assert_eq!(c.at.path, "/app.css?v=1");
    assert!(c.at.https && c.at.port == 443 && c.at.host_header == "www.example.com");
    assert!(!c.origin.https && c.origin.port == 8080);
    assert_eq!(c.origin.host_header, "origin.example.com:8080");
    assert_eq!(c.origin_address, Some("127.0.0.1:8080".parse().unwrap()));
    assert_eq!(c.version, VersionSource::Header("x-version".into()));
    assert_eq!(
        c.via,
        vec![("cdn-a".into(), "127.0.0.1:9000".parse().unwrap())]
    );
    let d = &f.canaries[1];
    assert_eq!(d.version, VersionSource::ETag);
    assert_eq!(
        (d.at.port, d.at.host_header.as_str()),
        (8000, "www.example.com:8000")
    );
    assert!(d.targets.is_empty());
    let none = settings("purge = {}").unwrap().freshness;
    assert!(!none.verify && none.canaries.is_empty());
    assert_eq!(none.stale_grace, Duration::from_secs(60));
    assert_eq!(none.check_every, Duration::from_secs(30));
}

#[test]
fn canary_errors_name_the_field() {
    let e = settings(
        r#"
[purge]
verify = true
stale_grace = -1
check_every = 0
[[purge.canaries]]
url = "ftp://www.example.com/a"
version = "md5"
origin_address = "origin:80"
[[purge.canaries]]
url = "https://www.example.com/"
origin = "https://origin.example.com/base"
targets = []
via = { cdn-a = "nope" }
[[purge.canaries]]
url = "https://www.example.com/b.css"
origin = "https://o.example.com"
version = "header:bad header"
"#,
    )
    .unwrap_err();
    assert_has(&e, "purge.stale_grace", "positive number of seconds");
    assert_has(&e, "purge.check_every", "positive number of seconds");
    assert_has(&e, "purge.canaries[0].url", "http:// or https://");
    assert_has(&e, "purge.canaries[0].origin", "required");
    assert_has(
        &e,
        "purge.canaries[0].version",
        "\"etag\", \"last-modified\"",
    );
    assert_has(
        &e,
        "purge.canaries[0].origin_address",
        "IP address and port",
    );
    assert_has(&e, "purge.canaries[1].url", "must name an object");
    assert_has(&e, "purge.canaries[1].origin", "base URL");
    assert_has(&e, "purge.canaries[1].targets", "at least one target");
    assert_has(&e, "purge.canaries[1].via.cdn-a", "IP address and port");
    assert_has(&e, "purge.canaries[2].version", "not a valid header name");
    let e = settings("[purge]\nverify = true\n").unwrap_err();
    assert_has(&e, "purge.verify", "at least one [[purge.canaries]]");
    let e = settings(
        "[purge]\n[[purge.canaries]]\nurl = \"https://a.example/x\"\norigin = \"https://o.example\"\n\
         [[purge.canaries]]\nurl = \"https://a.example/x\"\norigin = \"https://o.example\"\n",
    )
    .unwrap_err();
    assert_has(&e, "purge.canaries[1].url", "listed twice");
}

#[test]
fn canary_targets_must_exist() {
    let text = r#"
[[targets]]
name = "cdn-a"
cname = "a.example.net"
[[purge.canaries]]
url = "https://www.example.com/app.css"
origin = "https://origin.example.com"
targets = ["cdn-a", "cdn-z"]
via = { cdn-y = "127.0.0.1:1" }
"#;
    let e = crate::config::parse(text, "test").unwrap_err();
    let issues: Vec<ConfigIssue> = e.issues;
    assert_has(
        &issues,
        "purge.canaries[0].targets",
        "\"cdn-z\" is not a target",
    );
    assert_has(
        &issues,
        "purge.canaries[0].via",
        "\"cdn-y\" is not a target",
    );
}
