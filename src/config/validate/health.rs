//! `[health]`: the thresholds of the health state machine.

use crate::config::issues::{Issues, seconds};
use crate::config::schema::HealthConfig;
use crate::health::machine::Thresholds;

/// `[health]` → the state machine's thresholds.
pub(super) fn validate(h: &HealthConfig, issues: &mut Issues) -> Thresholds {
    let mut t = Thresholds::default();
    let mut frac = |v: Option<f64>, key: &str, slot: &mut f64| {
        if let Some(x) = v {
            if (0.0..=1.0).contains(&x) {
                *slot = x;
            } else {
                issues.push(
                    format!("health.{key}"),
                    format!("must be between 0 and 1 (got {x})"),
                );
            }
        }
    };
    frac(h.error_rate, "error_rate", &mut t.error_rate.fail_above);
    frac(
        h.error_rate_recover,
        "error_rate_recover",
        &mut t.error_rate.recover_below,
    );
    frac(
        h.availability,
        "availability",
        &mut t.availability.fail_below,
    );
    frac(
        h.availability_recover,
        "availability_recover",
        &mut t.availability.recover_above,
    );
    let secs = |v: Option<f64>, key: &str, min: f64, issues: &mut Issues| {
        v.and_then(|x| seconds(x, min, 86_400.0, &format!("health.{key}"), issues))
    };
    if let Some(d) = secs(h.p95, "p95", 0.001, issues) {
        t.latency.fail_above = d;
    }
    if let Some(d) = secs(h.p95_recover, "p95_recover", 0.001, issues) {
        t.latency.recover_below = d;
    }
    if let Some(d) = secs(h.recover_for, "recover_for", 0.0, issues) {
        t.error_rate.recover_for = d;
        t.latency.recover_for = d;
    }
    if let Some(d) = secs(
        h.availability_recover_for,
        "availability_recover_for",
        0.0,
        issues,
    ) {
        t.availability.recover_for = d;
    }
    if let Some(d) = secs(h.min_dwell, "min_dwell", 0.0, issues) {
        t.min_dwell = d;
    }
    if let Some(d) = secs(h.unstable_for, "unstable_for", 0.0, issues) {
        t.unstable_for = d;
    }
    if let Some(n) = h.min_samples {
        t.error_rate.min_samples = n;
    }
    if let Some(z) = h.confidence_z {
        if (0.0..=10.0).contains(&z) {
            t.error_rate.z = z;
        } else {
            issues.push(
                "health.confidence_z",
                format!("must be between 0 and 10 (got {z})"),
            );
        }
    }
    if t.error_rate.recover_below > t.error_rate.fail_above {
        issues.push(
            "health.error_rate_recover",
            "must not be above health.error_rate (recovery needs a lower error rate than failure)",
        );
    }
    if t.availability.recover_above < t.availability.fail_below {
        issues.push(
            "health.availability_recover",
            "must not be below health.availability",
        );
    }
    if t.latency.recover_below > t.latency.fail_above {
        issues.push("health.p95_recover", "must not be above health.p95");
    }
    t
}
