//! The thresholds the machine is configured by: one rule per signal, and [`Thresholds`].

use std::time::Duration;

use super::text::hms;
use crate::health::window::Win;

/// Error rate over `window` (Check level).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorRateRule {
    pub enabled: bool,
    pub window: Win,
    /// Fail when the Wilson lower bound of the error rate is above this (fraction).
    pub fail_above: f64,
    /// z of the Wilson score interval (1.96: 95 % two-sided).
    pub z: f64,
    /// Checks needed in `window` before the rule can fail.
    pub min_samples: u64,
    pub recover_window: Win,
    /// Recovery condition: point error rate over `recover_window` below this (fraction).
    pub recover_below: f64,
    pub recover_for: Duration,
}

impl Default for ErrorRateRule {
    fn default() -> Self {
        ErrorRateRule {
            enabled: true,
            window: Win::M1,
            fail_above: 0.05,
            z: 3.0,
            min_samples: 10,
            recover_window: Win::M1,
            recover_below: 0.01,
            recover_for: Duration::from_secs(300),
        }
    }
}

/// p95 latency over `window` (Check level; ok checks only feed the percentiles).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyRule {
    pub enabled: bool,
    pub window: Win,
    pub fail_above: Duration,
    /// Checks needed in `window` before the rule can fail.
    pub min_samples: u64,
    pub recover_window: Win,
    pub recover_below: Duration,
    pub recover_for: Duration,
}

impl Default for LatencyRule {
    fn default() -> Self {
        LatencyRule {
            enabled: true,
            window: Win::M1,
            fail_above: Duration::from_secs(2),
            min_samples: 5,
            recover_window: Win::M1,
            recover_below: Duration::from_millis(500),
            recover_for: Duration::from_secs(300),
        }
    }
}

/// Time-weighted availability (Check level).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AvailabilityRule {
    pub enabled: bool,
    pub window: Win,
    /// Fail when availability over `window` is below this (fraction).
    pub fail_below: f64,
    /// Checks needed in `window` before the rule can fail (so that one failed check of a target
    /// just added, when little time is known, does not take it down).
    pub min_samples: u64,
    pub recover_window: Win,
    /// Recovery condition: availability over `recover_window` above this (fraction).
    pub recover_above: f64,
    pub recover_for: Duration,
}

impl Default for AvailabilityRule {
    fn default() -> Self {
        AvailabilityRule {
            enabled: true,
            window: Win::M5,
            fail_below: 0.99,
            min_samples: 10,
            recover_window: Win::M1,
            recover_above: 0.999,
            recover_for: Duration::from_secs(600),
        }
    }
}

/// RUM complaint spikes (Degraded, not Down).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RumRule {
    pub enabled: bool,
    pub window: Win,
    /// Spiking when the complaint rate is above `spike_factor` × baseline …
    pub spike_factor: f64,
    /// … and at least this (fraction) …
    pub min_rate: f64,
    /// … from at least this many beacons.
    pub min_samples: u64,
    /// Spiking ends when the rate is at most `back_factor` × baseline (or below `min_rate`, or
    /// fewer than `min_samples` beacons).
    pub back_factor: f64,
    pub baseline_half_life: Duration,
    /// How long it must not have been spiking before Degraded goes back to Healthy.
    pub recover_for: Duration,
}

impl Default for RumRule {
    fn default() -> Self {
        RumRule {
            enabled: true,
            window: Win::M5,
            spike_factor: 3.0,
            min_rate: 0.01,
            min_samples: 20,
            back_factor: 1.5,
            baseline_half_life: Duration::from_secs(3600),
            recover_for: Duration::ZERO,
        }
    }
}

/// Everything the machine is configured by. `Default` is the seed policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub error_rate: ErrorRateRule,
    pub latency: LatencyRule,
    pub availability: AvailabilityRule,
    pub rum: RumRule,
    /// No machine transition sooner than this after the previous one (hard failures excepted).
    pub min_dwell: Duration,
    /// [`TargetMachine::unstable`](super::TargetMachine::unstable) for this long after an
    /// effective-state change.
    pub unstable_for: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            error_rate: ErrorRateRule::default(),
            latency: LatencyRule::default(),
            availability: AvailabilityRule::default(),
            rum: RumRule::default(),
            min_dwell: Duration::from_secs(30),
            unstable_for: Duration::from_secs(600),
        }
    }
}

impl Thresholds {
    /// Combinations worth explaining (not errors), as (config field, text): a recovery that can
    /// complete before its fail rule's window has forgotten the outage. Hysteresis holds anyway
    /// (see [`TargetMachine::judged_until`](super::TargetMachine::judged_until)); the note says
    /// how.
    pub fn notes(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let e = &self.error_rate;
        let a = &self.availability;
        let rules = [
            (
                "health.recover_for",
                "error rate",
                e.recover_for,
                e.recover_window,
                e.window,
                format!("{} checks", e.min_samples),
            ),
            (
                "health.availability_recover_for",
                "availability",
                a.recover_for,
                a.recover_window,
                a.window,
                format!(
                    "{} checks and {} of known time",
                    a.min_samples,
                    hms(a.window.duration() / 5)
                ),
            ),
        ];
        for (field, what, recover_for, recover_window, window, needs) in rules {
            if recover_for + recover_window.duration() < window.duration() {
                out.push((
                    field,
                    format!(
                        "a target can recover {} after its {what} is clean over {recover_window}, \
                         while the {what} fail rule reads {window}: after a recovery that rule \
                         judges only what came after it (it needs {needs} from then on before \
                         it can fail the target again), so the outage it recovered from cannot \
                         fail it again",
                        hms(recover_for)
                    ),
                ));
            }
        }
        out
    }
}
