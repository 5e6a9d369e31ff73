//! `[probe]`: the prober's own settings and the defaults of every check, and the timing and
//! trust keys that a target's `[targets.check]` may set again.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::issues::{Context, Issues, check_name, seconds};
use crate::config::schema::ProbeConfig;
use crate::config::valid::{DEFAULT_CHECK_TIMEOUT, ProbeSettings, Timing};

const MIN_HEARTBEAT: f64 = 0.1;
const MAX_CONFIRM: u32 = 10;

/// The timeout when none is set: 2 s, or half the interval when that is shorter.
pub(super) fn default_timeout(interval: Duration) -> Duration {
    Duration::from_secs_f64(DEFAULT_CHECK_TIMEOUT).min(interval / 2)
}

/// A check's number of seconds: between `min` and a day.
fn check_seconds(v: f64, field: &str, min: f64, issues: &mut Issues) -> Option<Duration> {
    seconds(v, min, 86_400.0, field, issues)
}

/// `[probe]`.
pub(super) fn validate(p: &ProbeConfig, ctx: &Context, issues: &mut Issues) -> ProbeSettings {
    let mut s = ProbeSettings::default();
    if let Some(v) = &p.vantage {
        let v = v.trim();
        match check_name(v) {
            Ok(()) => s.vantage = v.to_string(),
            Err(_) if v.is_empty() => issues.push(
                "probe.vantage",
                "must be a non-empty name: letters, digits, '-', '_' and '.', at most 64",
            ),
            Err(e) => issues.push("probe.vantage", e),
        }
    }
    if let Some(c) = p.concurrency {
        if (1..=100_000).contains(&c) {
            s.concurrency = c as usize;
        } else {
            issues.push(
                "probe.concurrency",
                format!("must be between 1 and 100000 (got {c})"),
            );
        }
    }
    s.defaults = timing(
        s.defaults,
        p.interval,
        p.timeout,
        p.jitter,
        p.confirm,
        p.confirm_gap,
        p.watch,
        p.heartbeat,
        "probe",
        issues,
    );
    s.explicit_timeout = p.timeout.is_some();
    if !s.explicit_timeout {
        // The default timeout (2 s) gives way to a short interval.
        s.defaults.timeout = default_timeout(s.defaults.interval);
    } else if s.defaults.timeout >= s.defaults.interval {
        issues.push(
            "probe.timeout",
            format!(
                "must be shorter than the interval ({} s >= {} s)",
                s.defaults.timeout.as_secs_f64(),
                s.defaults.interval.as_secs_f64()
            ),
        );
    }
    if let Some(r) = &p.resolvers {
        s.resolvers = resolvers(r, "probe.resolvers", issues);
    }
    if let Some(d) = p.cert_warning_days {
        s.cert_warning_days = d;
    }
    if let Some(f) = &p.ca_file {
        s.ca_file = ca_file(f, "probe.ca_file", ctx, issues);
    }
    s
}

pub(super) fn resolvers(list: &[String], field: &str, issues: &mut Issues) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let r = r.trim();
        let parsed = r
            .parse::<SocketAddr>()
            .ok()
            .or_else(|| r.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)));
        match parsed {
            Some(a) => out.push(a),
            None => issues.push(
                format!("{field}[{i}]"),
                format!("\"{r}\" is not an address (\"ip\" or \"ip:port\")"),
            ),
        }
    }
    out
}

/// Apply `overrides` (a target's) over `base` (the `[probe]` defaults); checks every value.
#[allow(clippy::too_many_arguments)]
pub(super) fn timing(
    base: Timing,
    interval: Option<f64>,
    timeout: Option<f64>,
    jitter: Option<f64>,
    confirm: Option<u32>,
    confirm_gap: Option<f64>,
    watch: Option<bool>,
    heartbeat: Option<f64>,
    f: &str,
    issues: &mut Issues,
) -> Timing {
    let mut t = base;
    if let Some(v) = interval
        && let Some(d) = check_seconds(v, &format!("{f}.interval"), 1.0, issues)
    {
        t.interval = d;
    }
    if let Some(v) = timeout
        && let Some(d) = check_seconds(v, &format!("{f}.timeout"), 0.001, issues)
    {
        t.timeout = d;
    }
    if let Some(j) = jitter {
        if (0.0..=0.5).contains(&j) {
            t.jitter = j;
        } else {
            issues.push(
                format!("{f}.jitter"),
                format!("must be a fraction of the interval between 0 and 0.5 (got {j})"),
            );
        }
    }
    if let Some(c) = confirm {
        if c <= MAX_CONFIRM {
            t.confirm = c;
        } else {
            issues.push(
                format!("{f}.confirm"),
                format!("at most {MAX_CONFIRM} confirmation re-checks (got {c})"),
            );
        }
    }
    if let Some(v) = confirm_gap
        && let Some(d) = check_seconds(v, &format!("{f}.confirm_gap"), 0.0, issues)
    {
        t.confirm_gap = d;
    }
    if let Some(w) = watch {
        t.watch = w;
    }
    if let Some(h) = heartbeat {
        if h == 0.0 {
            t.heartbeat = Duration::ZERO;
        } else if let Some(d) = check_seconds(h, &format!("{f}.heartbeat"), MIN_HEARTBEAT, issues) {
            t.heartbeat = d;
        }
    }
    t
}

/// A CA file (relative to the configuration's directory), read and checked now.
pub(super) fn ca_file(
    value: &str,
    field: &str,
    ctx: &Context,
    issues: &mut Issues,
) -> Option<PathBuf> {
    let p = ctx.path(value, None);
    let path = p.display().to_string();
    match std::fs::read(&p) {
        Ok(bytes) => {
            let n = rustls_pki_certs(&bytes);
            match n {
                Ok(0) => {
                    issues.push(field, format!("{path}: no PEM certificate found"));
                    None
                }
                Ok(_) => Some(p),
                Err(e) => {
                    issues.push(field, format!("{path}: {e}"));
                    None
                }
            }
        }
        Err(e) => {
            issues.push(field, format!("cannot read {path}: {e}"));
            None
        }
    }
}

/// Number of certificates in a PEM file.
fn rustls_pki_certs(pem: &[u8]) -> Result<usize, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut n = 0;
    for c in CertificateDer::pem_slice_iter(pem) {
        c.map_err(|e| format!("bad PEM: {e}"))?;
        n += 1;
    }
    Ok(n)
}
