//! `[[overrides]]`: operator overrides as persisted (target, state, region, expiry, reason).

use super::geo::region_key;
use crate::config::issues::{Issues, MAX_REASON_LEN, check_text, excerpt};
use crate::config::schema::Config;
use crate::config::valid::OverrideSpec;
use crate::geo::CountryTable;
use crate::health::machine::OverrideKind;

/// `[[overrides]]`: each names a configured target; one per target and region.
pub(super) fn validate(
    cfg: &Config,
    countries: Option<&CountryTable>,
    issues: &mut Issues,
) -> Vec<OverrideSpec> {
    let mut out = Vec::new();
    for (i, o) in cfg.overrides.iter().enumerate() {
        let f = format!("overrides[{i}]");
        let mut ok = true;
        if !cfg.targets.iter().any(|t| t.name == o.target) {
            issues.push(
                format!("{f}.target"),
                format!("no target named \"{}\"", excerpt(&o.target)),
            );
            ok = false;
        }
        let kind = OverrideKind::parse(&o.state);
        if kind.is_none() {
            issues.push(
                format!("{f}.state"),
                format!(
                    "must be \"forced_up\", \"forced_down\" or \"drained\" (got \"{}\")",
                    o.state
                ),
            );
            ok = false;
        }
        let region = match &o.region {
            None => None,
            Some(r) => match region_key(r, countries, &format!("{f}.region"), issues) {
                Some(k) => Some((k, r.clone())),
                None => {
                    ok = false;
                    None
                }
            },
        };
        if let Err(e) = check_text(&o.reason, MAX_REASON_LEN) {
            issues.push(format!("{f}.reason"), e);
            ok = false;
        }
        for (key, t) in [("until", o.until), ("set_at", o.set_at)] {
            if let Some(u) = t
                && u > 253_402_300_799
            {
                issues.push(
                    format!("{f}.{key}"),
                    format!("{u} is not a Unix time in seconds (after year 9999; milliseconds?)"),
                );
                ok = false;
            }
        }
        if let Some(j) = cfg.overrides[..i]
            .iter()
            .position(|p| p.target == o.target && p.region == o.region)
        {
            issues.push(
                f.clone(),
                format!("a second override of the same target and region (also overrides[{j}])"),
            );
            ok = false;
        }
        if ok && let Some(kind) = kind {
            out.push(OverrideSpec {
                target: o.target.clone(),
                kind,
                region,
                until_ms: o.until.map(|s| s.saturating_mul(1000)),
                reason: o.reason.clone(),
                set_at_ms: o.set_at.unwrap_or(0).saturating_mul(1000),
            });
        }
    }
    out
}
