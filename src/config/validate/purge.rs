//! `[purge]` (the store, SLAs, batching windows, retries, limits) and each target's
//! `[targets.purge]` (its provider, that provider's keys and credentials, where its API is, its
//! rate limit). Credentials are read from the environment only, through the `*_env` keys.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::issues::{Context, Issues, env_secret, excerpt, parse_name};
use crate::config::purge::{
    AkamaiNetwork, AwsCredentials, EdgeGridCredentials, EdgeMethod, PriceTier, Priority,
    ProviderConfig, PurgeSettings, PurgeTarget, RateLimit, Secret,
};
use crate::config::purge_defaults::{self, ProviderDefaults};
use crate::config::schema::{PriceTierConfig, PurgeConfig, PurgeSectionConfig};

/// Longest duration a purge key takes: a year (and `Duration` cannot overflow).
const MAX_SECONDS: f64 = 365.0 * 86_400.0;
/// One provider request's default time limit.
const DEFAULT_TIMEOUT: f64 = 10.0;
const PROVIDERS: [&str; 5] = ["cloudflare", "fastly", "akamai", "cloudfront", "http"];

/// `[purge]`; every key left out (or wrong: then reported) has its default.
pub(super) fn settings(
    p: &PurgeSectionConfig,
    ctx: &Context,
    issues: &mut Issues,
) -> PurgeSettings {
    let d = PurgeSettings::default();
    let store = store(p.store.as_deref(), &d.store, ctx, issues);
    let mut sla = d.sla;
    let mut batch_window = d.batch_window;
    for pr in Priority::ALL {
        let i = pr.index();
        if let Some(v) = p.sla.values()[i] {
            let field = format!("purge.sla.{}", pr.as_str());
            sla[i] = seconds(v, &field, issues).unwrap_or(sla[i]);
        }
        let Some(v) = p.batch_window.values()[i] else {
            continue;
        };
        let field = format!("purge.batch_window.{}", pr.as_str());
        if pr == Priority::Critical {
            if v != 0.0 {
                issues.push(
                    field,
                    format!("must be 0: critical purges are never batched (got {v})"),
                );
            }
        } else if !v.is_finite() || !(0.0..=MAX_SECONDS).contains(&v) {
            issues.push(
                field,
                format!("must be a number of seconds between 0 and {MAX_SECONDS} (got {v})"),
            );
        } else {
            batch_window[i] = Duration::from_secs_f64(v);
        }
    }
    let opt = |v: Option<f64>, key: &str, default: Duration, issues: &mut Issues| match v {
        Some(v) => seconds(v, &format!("purge.{key}"), issues),
        None => Some(default),
    };
    let retry_base = opt(p.retry_base, "retry_base", d.retry_base, issues);
    let retry_max = opt(p.retry_max, "retry_max", d.retry_max, issues);
    let give_up = opt(p.give_up, "give_up", d.give_up, issues);
    if let (Some(base), Some(max)) = (retry_base, retry_max)
        && base > max
    {
        issues.push(
            "purge.retry_base",
            format!(
                "must be at most purge.retry_max ({} s; got {} s)",
                max.as_secs_f64(),
                base.as_secs_f64()
            ),
        );
    }
    let longest = Priority::ALL
        .into_iter()
        .max_by_key(|p| sla[p.index()])
        .expect("four priorities");
    if let Some(g) = give_up
        && g < sla[longest.index()]
    {
        issues.push(
            "purge.give_up",
            format!(
                "must be at least the largest SLA (purge.sla.{} = {} s; got {} s)",
                longest.as_str(),
                sla[longest.index()].as_secs_f64(),
                g.as_secs_f64()
            ),
        );
    }
    PurgeSettings {
        store,
        sla,
        batch_window,
        retry_base: retry_base.unwrap_or(d.retry_base),
        retry_max: retry_max.unwrap_or(d.retry_max),
        give_up: give_up.unwrap_or(d.give_up),
        max_items: positive(p.max_items, d.max_items, "purge.max_items", issues),
        keep_finished: positive(
            p.keep_finished,
            d.keep_finished,
            "purge.keep_finished",
            issues,
        ),
        registry_max_urls: positive(
            p.registry_max_urls,
            d.registry_max_urls,
            "purge.registry_max_urls",
            issues,
        ),
        freshness: canary::freshness(p, issues),
    }
}

pub(super) use canary::check_targets as check_canary_targets;

/// `purge.store`, resolved like `server.state_file`: relative to the configuration's directory.
fn store(v: Option<&str>, default: &Path, ctx: &Context, issues: &mut Issues) -> PathBuf {
    let f = "purge.store";
    let Some(v) = v else {
        return ctx.path(&default.to_string_lossy(), None);
    };
    if v.trim().is_empty() {
        issues.push(f, "must name a file");
        return default.to_path_buf();
    }
    let path = ctx.path(v, None);
    if v.ends_with('/') || path.is_dir() {
        issues.push(
            f,
            format!("\"{}\" is a directory; name a file", path.display()),
        );
    }
    path
}

/// A positive number of seconds, at most [`MAX_SECONDS`].
fn seconds(v: f64, field: &str, issues: &mut Issues) -> Option<Duration> {
    if !v.is_finite() || v <= 0.0 {
        issues.push(
            field,
            format!("must be a positive number of seconds (got {v})"),
        );
        return None;
    }
    if v > MAX_SECONDS {
        issues.push(
            field,
            format!("must be at most {MAX_SECONDS} seconds, a year (got {v})"),
        );
        return None;
    }
    Some(Duration::from_secs_f64(v))
}

/// A count of at least 1 (`default` when unset or wrong).
fn positive(v: Option<usize>, default: usize, field: &str, issues: &mut Issues) -> usize {
    match v {
        Some(0) => {
            issues.push(field, "must be at least 1 (got 0)");
            default
        }
        Some(n) => n,
        None => default,
    }
}

/// `[targets.purge]` at field `f` (`targets[0].purge`); None when it has issues.
pub(super) fn target(p: &PurgeConfig, f: &str, issues: &mut Issues) -> Option<PurgeTarget> {
    let before = issues.len();
    let name = p.provider.trim();
    let defaults = PROVIDERS
        .contains(&name)
        .then(|| purge_defaults::for_provider(name))
        .flatten();
    if defaults.is_none() {
        issues.push(
            format!("{f}.provider"),
            format!(
                "must be one of \"cloudflare\", \"fastly\", \"akamai\", \"cloudfront\" and \"http\" (got \"{}\")",
                excerpt(&p.provider)
            ),
        );
    }
    let base_url = match (&p.base_url, name) {
        (Some(_), "http") => {
            issues.push(
                format!("{f}.base_url"),
                "not used by provider \"http\": its `edges` are its URLs",
            );
            None
        }
        (Some(u), _) => http_url(u, &format!("{f}.base_url"), issues),
        (None, "akamai") => {
            issues.push(
                format!("{f}.base_url"),
                "required for provider \"akamai\": the host of your EdgeGrid credential \
                 (https://akab-....purge.akamaiapis.net)",
            );
            None
        }
        (None, _) => defaults.map(|d| d.base_url.trim_end_matches('/').to_string()),
    };
    let rate = rate(p, defaults, f, issues);
    let timeout = match p.timeout {
        Some(v) => seconds(v, &format!("{f}.timeout"), issues),
        None => Some(Duration::from_secs_f64(DEFAULT_TIMEOUT)),
    };
    let host = p.host.as_deref().and_then(|h| match parse_name(h) {
        Ok(n) => Some(n.to_string().trim_end_matches('.').to_string()),
        Err(e) => {
            issues.push(format!("{f}.host"), e);
            None
        }
    });
    // An unknown provider: nothing more can be checked.
    let defaults = defaults?;
    let max_per_request = match p.max_per_request {
        Some(v) if v == 0 || v > defaults.max_per_request => {
            issues.push(
                format!("{f}.max_per_request"),
                format!(
                    "must be between 1 and {}, {name}'s limit per request (got {v})",
                    defaults.max_per_request
                ),
            );
            defaults.max_per_request
        }
        Some(v) => v,
        None => defaults.max_per_request,
    };
    foreign_keys(p, name, f, issues);
    let provider = provider(p, name, f, issues);
    let pricing = pricing(p.pricing.as_deref(), name, f, issues);
    let purge_ratio_half = ratio_half(p.purge_ratio_half, f, issues);
    if issues.len() != before {
        return None;
    }
    Some(PurgeTarget {
        provider: provider?,
        base_url: base_url?,
        rate: rate?,
        max_per_request,
        timeout: timeout?,
        host,
        pricing: pricing?,
        purge_ratio_half,
    })
}

/// `pricing`: tiers of ascending `up_to` (whole items, at least 1), each with a `per_item` of
/// at least 0 dollars, the last without `up_to`; the provider's when not given.
fn pricing(
    v: Option<&[PriceTierConfig]>,
    name: &str,
    f: &str,
    issues: &mut Issues,
) -> Option<Vec<PriceTier>> {
    let Some(list) = v else {
        return Some(purge_defaults::pricing(name));
    };
    let field = format!("{f}.pricing");
    if list.is_empty() {
        issues.push(
            field,
            "must have at least one tier (`[{ per_item = 0.0 }]`: free)",
        );
        return None;
    }
    let before = issues.len();
    let mut out = Vec::with_capacity(list.len());
    let mut last_bound: Option<u64> = None;
    for (k, t) in list.iter().enumerate() {
        let at = format!("{field}[{k}]");
        let per_item = match t.per_item {
            None => {
                issues.push(
                    format!("{at}.per_item"),
                    "required: the dollars each item of this tier costs",
                );
                0.0
            }
            Some(x) if !x.is_finite() || x < 0.0 => {
                issues.push(
                    format!("{at}.per_item"),
                    format!("must be a price of at least 0 dollars (got {x})"),
                );
                0.0
            }
            Some(x) => x,
        };
        let last = k + 1 == list.len();
        let up_to = match (t.up_to, last) {
            (None, true) => None,
            (None, false) => {
                issues.push(
                    format!("{at}.up_to"),
                    "required in every tier but the last (the last has no bound)",
                );
                None
            }
            (Some(u), true) => {
                issues.push(
                    format!("{at}.up_to"),
                    format!(
                        "the last tier has no bound: remove up_to = {u} (or add a tier after it)"
                    ),
                );
                None
            }
            (Some(u), false) if u < 1 => {
                issues.push(
                    format!("{at}.up_to"),
                    format!("must be a number of items of at least 1 (got {u})"),
                );
                None
            }
            (Some(u), false) => {
                let u = u as u64;
                if let Some(b) = last_bound
                    && u <= b
                {
                    issues.push(
                        format!("{at}.up_to"),
                        format!(
                            "must be above the previous tier's up_to ({b}): bounds ascend (got {u})"
                        ),
                    );
                }
                last_bound = Some(u);
                Some(u)
            }
        };
        out.push(PriceTier { up_to, per_item });
    }
    (issues.len() == before).then_some(out)
}

/// `purge_ratio_half`: a positive number of objects (default [`purge_defaults::PURGE_RATIO_HALF`]).
fn ratio_half(v: Option<f64>, f: &str, issues: &mut Issues) -> f64 {
    match v {
        None => purge_defaults::PURGE_RATIO_HALF,
        Some(x) if x.is_finite() && x > 0.0 => x,
        Some(x) => {
            issues.push(
                format!("{f}.purge_ratio_half"),
                format!("must be a positive number of objects (got {x})"),
            );
            purge_defaults::PURGE_RATIO_HALF
        }
    }
}

/// `rate` and `burst`, each defaulting to the provider's.
fn rate(
    p: &PurgeConfig,
    defaults: Option<ProviderDefaults>,
    f: &str,
    issues: &mut Issues,
) -> Option<RateLimit> {
    let mut ok = true;
    if let Some(r) = p.rate
        && (!r.is_finite() || r <= 0.0)
    {
        issues.push(
            format!("{f}.rate"),
            format!("must be a positive number of tokens per second (got {r})"),
        );
        ok = false;
    }
    if let Some(b) = p.burst
        && (!b.is_finite() || b < 1.0)
    {
        issues.push(
            format!("{f}.burst"),
            format!("must be a number of tokens of at least 1 (got {b})"),
        );
        ok = false;
    }
    let d = defaults?.rate;
    ok.then(|| RateLimit {
        per_second: p.rate.unwrap_or(d.per_second),
        burst: p.burst.unwrap_or(d.burst),
    })
}

/// The keys of `p` that are set and belong to another provider than `name`.
fn foreign_keys(p: &PurgeConfig, name: &str, f: &str, issues: &mut Issues) {
    const CF: &[&str] = &["cloudflare"];
    const AK: &[&str] = &["akamai"];
    const AWS: &[&str] = &["cloudfront"];
    const HTTP: &[&str] = &["http"];
    let keys: [(&str, bool, &[&str]); 15] = [
        ("zone_id", p.zone_id.is_some(), CF),
        (
            "token_env",
            p.token_env.is_some(),
            &["cloudflare", "fastly", "http"],
        ),
        ("service_id", p.service_id.is_some(), &["fastly"]),
        ("client_token_env", p.client_token_env.is_some(), AK),
        ("client_secret_env", p.client_secret_env.is_some(), AK),
        ("access_token_env", p.access_token_env.is_some(), AK),
        ("network", p.network.is_some(), AK),
        ("cp_codes", p.cp_codes.is_some(), AK),
        ("distribution_id", p.distribution_id.is_some(), AWS),
        ("access_key_id_env", p.access_key_id_env.is_some(), AWS),
        (
            "secret_access_key_env",
            p.secret_access_key_env.is_some(),
            AWS,
        ),
        ("session_token_env", p.session_token_env.is_some(), AWS),
        ("edges", p.edges.is_some(), HTTP),
        ("key_method", p.key_method.is_some(), HTTP),
        ("key_header", p.key_header.is_some(), HTTP),
    ];
    for (key, set, owners) in keys {
        if set && !owners.contains(&name) {
            let quoted: Vec<String> = owners.iter().map(|o| format!("\"{o}\"")).collect();
            let reason = match quoted.split_last() {
                Some((last, [])) => format!("only for provider {last}"),
                Some((last, rest)) => format!("only for providers {} and {last}", rest.join(", ")),
                None => unreachable!("every key has a provider"),
            };
            issues.push(format!("{f}.{key}"), reason);
        }
    }
}

/// What only provider `name` needs; its ids and credentials required.
fn provider(p: &PurgeConfig, name: &str, f: &str, issues: &mut Issues) -> Option<ProviderConfig> {
    let need = |v: &Option<String>, key: &str, issues: &mut Issues| -> Option<String> {
        if v.is_none() {
            issues.push(
                format!("{f}.{key}"),
                format!("required for provider \"{name}\""),
            );
        }
        v.clone()
    };
    let id = |v: &Option<String>, key: &str, issues: &mut Issues| -> Option<String> {
        let v = need(v, key, issues)?;
        let v = v.trim();
        let bad = v.is_empty()
            || !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if bad {
            issues.push(
                format!("{f}.{key}"),
                format!(
                    "\"{}\" is not an id: use letters, digits, '-' and '_'",
                    excerpt(v)
                ),
            );
            return None;
        }
        Some(v.to_string())
    };
    let secret = |v: &Option<String>, key: &str, issues: &mut Issues| {
        let var = need(v, key, issues)?;
        env_var(&var, &format!("{f}.{key}"), issues)
    };
    let optional = |v: &Option<String>, key: &str, issues: &mut Issues| {
        v.as_deref()
            .map(|var| env_var(var, &format!("{f}.{key}"), issues))
    };
    Some(match name {
        "cloudflare" => {
            let zone_id = id(&p.zone_id, "zone_id", issues);
            let token = secret(&p.token_env, "token_env", issues);
            ProviderConfig::Cloudflare {
                zone_id: zone_id?,
                token: token?,
            }
        }
        "fastly" => {
            let service_id = id(&p.service_id, "service_id", issues);
            let token = secret(&p.token_env, "token_env", issues);
            ProviderConfig::Fastly {
                service_id: service_id?,
                token: token?,
            }
        }
        "akamai" => {
            let client_token = secret(&p.client_token_env, "client_token_env", issues);
            let client_secret = secret(&p.client_secret_env, "client_secret_env", issues);
            let access_token = secret(&p.access_token_env, "access_token_env", issues);
            let network = match p.network.as_deref().map(str::trim) {
                None | Some("production") => Some(AkamaiNetwork::Production),
                Some("staging") => Some(AkamaiNetwork::Staging),
                Some(other) => {
                    issues.push(
                        format!("{f}.network"),
                        format!(
                            "must be \"production\" or \"staging\" (got \"{}\")",
                            excerpt(other)
                        ),
                    );
                    None
                }
            };
            ProviderConfig::Akamai {
                network: network?,
                credentials: EdgeGridCredentials {
                    client_token: client_token?,
                    client_secret: client_secret?,
                    access_token: access_token?,
                },
                cp_codes: p.cp_codes.clone().unwrap_or_default(),
            }
        }
        "cloudfront" => {
            let distribution_id = id(&p.distribution_id, "distribution_id", issues);
            let key_id = secret(&p.access_key_id_env, "access_key_id_env", issues);
            let key = secret(&p.secret_access_key_env, "secret_access_key_env", issues);
            let session = optional(&p.session_token_env, "session_token_env", issues);
            ProviderConfig::Cloudfront {
                distribution_id: distribution_id?,
                credentials: AwsCredentials {
                    access_key_id: key_id?,
                    secret_access_key: key?,
                    session_token: session.map_or(Some(None), |s| s.map(Some))?,
                },
            }
        }
        "http" => {
            let edges = edges(p.edges.as_deref(), f, issues);
            let key_method = match p.key_method.as_deref().map(str::trim) {
                None | Some("ban") => Some(EdgeMethod::Ban),
                Some("purge") => Some(EdgeMethod::Purge),
                Some("urls") => Some(EdgeMethod::Urls),
                Some(other) => {
                    issues.push(
                        format!("{f}.key_method"),
                        format!(
                            "must be \"ban\", \"purge\" or \"urls\" (got \"{}\")",
                            excerpt(other)
                        ),
                    );
                    None
                }
            };
            let key_header = p.key_header.as_deref().unwrap_or("xkey").trim();
            let key_header = match http::HeaderName::from_bytes(key_header.as_bytes()) {
                Ok(_) => Some(key_header.to_string()),
                Err(_) => {
                    issues.push(
                        format!("{f}.key_header"),
                        format!("\"{}\" is not an HTTP header name", excerpt(key_header)),
                    );
                    None
                }
            };
            let token = optional(&p.token_env, "token_env", issues);
            ProviderConfig::Http {
                edges: edges?,
                key_method: key_method?,
                key_header: key_header?,
                token: token.map_or(Some(None), |s| s.map(Some))?,
            }
        }
        _ => return None,
    })
}

/// The secret in environment variable `var`, reported at `field` (the `*_env` key) when the
/// name is no variable name or the variable is unset or empty. The value is never reported.
fn env_var(var: &str, field: &str, issues: &mut Issues) -> Option<Secret> {
    let var = var.trim();
    if var.is_empty() || var.contains(['=', '\0']) {
        issues.push(
            field,
            format!("\"{}\" is not an environment variable name", excerpt(var)),
        );
        return None;
    }
    env_secret(var, field.to_string(), issues).map(Secret::new)
}

/// `edges` of the `http` provider: at least one http(s) URL, each once.
fn edges(v: Option<&[String]>, f: &str, issues: &mut Issues) -> Option<Vec<String>> {
    let field = format!("{f}.edges");
    let Some(list) = v.filter(|l| !l.is_empty()) else {
        issues.push(
            field,
            "required for provider \"http\": at least one edge URL (\"http://10.0.0.1:6081\")",
        );
        return None;
    };
    let before = issues.len();
    // Each URL with its index in the list.
    let mut out: Vec<(usize, String)> = Vec::new();
    for (k, e) in list.iter().enumerate() {
        let Some(u) = http_url(e, &format!("{field}[{k}]"), issues) else {
            continue;
        };
        if let Some((j, _)) = out.iter().find(|(_, o)| *o == u) {
            issues.push(
                format!("{field}[{k}]"),
                format!("duplicate edge (also {field}[{j}])"),
            );
        }
        out.push((k, u));
    }
    (issues.len() == before).then(|| out.into_iter().map(|(_, u)| u).collect())
}

/// An http(s) URL with a host, no credentials, query or fragment; trailing slashes removed.
fn http_url(s: &str, field: &str, issues: &mut Issues) -> Option<String> {
    let t = s.trim();
    let reason = match reqwest::Url::parse(t) {
        Err(e) => format!("not a valid URL ({e}): it must start with http:// or https://"),
        Ok(u) if u.scheme() != "http" && u.scheme() != "https" => format!(
            "must be an http:// or https:// URL (got scheme \"{}\")",
            excerpt(u.scheme())
        ),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => "URL has no host".to_string(),
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            "must not carry credentials (they come from the `*_env` keys)".to_string()
        }
        Ok(u) if u.query().is_some() || u.fragment().is_some() => {
            "must not have a query or a fragment".to_string()
        }
        Ok(_) => return Some(t.trim_end_matches('/').to_string()),
    };
    issues.push(field, reason);
    None
}

mod canary;

#[cfg(test)]
mod tests;
