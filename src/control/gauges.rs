//! The gauges of `GET /metrics` that describe the control plane's state now.

use super::Control;
use crate::health::Level;
use crate::health::machine::EffectiveStatus;
use crate::metrics::Gauges;

/// The gauges of `GET /metrics` that describe the state now: (name, help, labels).
const STATE_GAUGES: [(&str, &str, &[&str]); 16] = [
    (
        "steerd_target_up",
        "1 when the target may be given to clients (healthy, degraded or forced up).",
        &["target", "role"],
    ),
    (
        "steerd_target_state",
        "1 for the target's current effective state.",
        &["target", "state"],
    ),
    (
        "steerd_target_error_ratio",
        "Failed checks / checks over the window (check level).",
        &["target", "role", "window"],
    ),
    (
        "steerd_target_availability_ratio",
        "Time-weighted availability over the window.",
        &["target", "role", "window"],
    ),
    (
        "steerd_target_latency_p95_seconds",
        "p95 of the check latency over the window.",
        &["target", "role", "window"],
    ),
    (
        "steerd_target_cache_hit_ratio",
        "Cache hits / lookups seen by the probes over the window.",
        &["target", "role", "window"],
    ),
    (
        "steerd_probe_last_run_timestamp_seconds",
        "Unix time of the target's latest completed check.",
        &["target"],
    ),
    (
        "steerd_target_reported_cache_hit_ratio",
        "Cache hit ratio reported by the CDN.",
        &["target"],
    ),
    (
        "steerd_target_spend_usd",
        "Spend so far this month (reported or estimated).",
        &["target"],
    ),
    (
        "steerd_target_projected_spend_usd",
        "Projected month-end spend.",
        &["target"],
    ),
    ("steerd_target_monthly_cap_usd", "Monthly cap.", &["target"]),
    (
        "steerd_rum_latency_p95_seconds",
        "p95 of real-user latency over 5 minutes.",
        &["target", "region"],
    ),
    (
        "steerd_rum_error_ratio",
        "Share of real-user beacons that failed over 5 minutes.",
        &["target", "region"],
    ),
    (
        "steerd_service_all_down",
        "1 when every candidate of some cell of the service is down.",
        &["service"],
    ),
    (
        "steerd_table_generation",
        "Generation of the routing table in force.",
        &[],
    ),
    (
        "steerd_config_version",
        "Version of the configuration in force.",
        &[],
    ),
];

impl Control {
    /// The gauges describing the state now (for `GET /metrics`).
    pub fn gauges(&self) -> Gauges {
        let now = self.now();
        let now_ms = now.mono_ms;
        let mut g = Gauges::new();
        let [
            up,
            state,
            err,
            avail,
            p95,
            chr,
            last,
            reported_chr,
            spend,
            projected,
            cap,
            rum_p95,
            rum_err,
            all_down,
            generation,
            version,
        ] = STATE_GAUGES.map(|(name, help, labels)| g.family(name, help, labels));
        let table = self.table.load();
        g.set(generation, &[], table.generation as f64);
        let (targets, states, costs, reports, cfg_version, services) = {
            let st = self.inner.lock();
            (
                st.config
                    .targets
                    .iter()
                    .map(|t| {
                        (
                            t.name.clone(),
                            t.role,
                            t.cost.as_ref().and_then(|c| c.monthly_cap),
                        )
                    })
                    .collect::<Vec<_>>(),
                st.live
                    .machines
                    .iter()
                    .map(|(k, m)| (k.to_string(), m.effective()))
                    .collect::<std::collections::BTreeMap<_, _>>(),
                st.live.costs.clone(),
                st.live.cache_reports.clone(),
                st.config.version,
                st.config
                    .services
                    .iter()
                    .map(|s| s.name.to_string())
                    .collect::<Vec<_>>(),
            )
        };
        g.set(version, &[], cfg_version as f64);
        for s in &services {
            let down = table.all_down.iter().any(|d| d == s);
            g.set(all_down, &[s], if down { 1.0 } else { 0.0 });
        }
        let mut store = self.health.lock();
        for (name, role, monthly_cap) in &targets {
            let eff = states
                .get(name)
                .copied()
                .unwrap_or(EffectiveStatus::Healthy);
            g.set(up, &[name, role], if eff.usable() { 1.0 } else { 0.0 });
            for s in EffectiveStatus::ALL {
                g.set(state, &[name, s.as_str()], if s == eff { 1.0 } else { 0.0 });
            }
            if let Some(th) = store.target(name) {
                for w in crate::health::WINDOWS {
                    let s = th.stats(Level::Check, now_ms, w);
                    let labels = [name.as_str(), role, w.as_str()];
                    if let Some(v) = s.error_rate {
                        g.set(err, &labels, v);
                    }
                    if let Some(v) = s.availability {
                        g.set(avail, &labels, v);
                    }
                    if let Some(v) = s.p95 {
                        g.set(p95, &labels, v.as_secs_f64());
                    }
                    let c = th.stats(Level::Cache, now_ms, w);
                    if let Some(v) = c.cache_hit_ratio.or(s.cache_hit_ratio) {
                        g.set(chr, &labels, v);
                    }
                }
                if let Some(t) = th.last(Level::Check).iter().map(|o| o.at_ms).max() {
                    g.set(last, &[name], now.wall_of(t) as f64 / 1000.0);
                }
            }
            if let Some(r) = reports.get(name).and_then(|r| r.hit_ratio) {
                g.set(reported_chr, &[name], r);
            }
            if let Some(c) = costs.get(name)
                && c.source != crate::policy::cost::Source::Unmetered
            {
                g.set(spend, &[name], c.spend_so_far);
                g.set(projected, &[name], c.projected);
            }
            if let Some(c) = monthly_cap {
                g.set(cap, &[name], *c);
            }
        }
        drop(store);
        let mut rum = self.rum.lock();
        let keys = rum.regions_by_target();
        for (name, _, _) in &targets {
            let (all, regions) = rum.stats(name, &keys, now_ms);
            for (region, s) in all
                .map(|s| ("all".to_string(), s))
                .into_iter()
                .chain(regions)
            {
                if let Some(v) = s.p95 {
                    g.set(rum_p95, &[name, &region], v.as_secs_f64());
                }
                if let Some(v) = s.error_rate {
                    g.set(rum_err, &[name, &region], v);
                }
            }
        }
        g
    }
}
