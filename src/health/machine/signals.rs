//! What one step looks at: [`Signals`], built from a target's windows.

use crate::health::Level;
use crate::health::window::{TargetHealth, WINDOWS, WindowStats};

/// What one step looks at, built by the caller from the target's windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Signals {
    /// Check level, windows 1m, 5m, 10m (index `Win::index()`).
    pub stats: [WindowStats; 3],
    /// RUM beacons (ok = false is a complaint), when there are any.
    pub rum: Option<[WindowStats; 3]>,
    /// The prober confirmed a hard failure (a whole burst failed) at this time.
    pub confirmed_down_at: Option<u64>,
    /// The newest passing check.
    pub last_ok_at: Option<u64>,
}

impl Signals {
    /// Check-level statistics of the three windows at `now_ms`, of what happened after
    /// `judged_until` (see [`TargetMachine::judged_until`](super::TargetMachine::judged_until));
    /// `last_ok_at` is the newest passing check among the latest observation of each vantage point;
    /// no RUM.
    pub fn from_target(
        t: &mut TargetHealth,
        now_ms: u64,
        confirmed_down_at: Option<u64>,
        judged_until: Option<u64>,
    ) -> Signals {
        let stats = t.series(Level::Check).all_stats_since(now_ms, judged_until);
        let last_ok_at = t
            .last(Level::Check)
            .iter()
            .filter(|o| o.ok)
            .map(|o| o.at_ms)
            .max();
        Signals {
            stats,
            rum: None,
            confirmed_down_at,
            last_ok_at,
        }
    }

    /// No data at all.
    pub fn empty() -> Signals {
        Signals {
            stats: WINDOWS.map(WindowStats::empty),
            rum: None,
            confirmed_down_at: None,
            last_ok_at: None,
        }
    }

    /// Nothing observed in the longest window (10 min).
    pub(super) fn silent(&self) -> bool {
        self.stats
            .iter()
            .all(|s| s.count == 0 && s.availability.is_none())
    }

    pub(super) fn has_data(&self) -> bool {
        self.stats.iter().any(|s| s.count > 0)
            || self
                .rum
                .as_ref()
                .is_some_and(|r| r.iter().any(|s| s.count > 0))
            || self.last_ok_at.is_some()
    }
}
