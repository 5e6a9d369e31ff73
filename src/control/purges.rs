//! The cache score's purge input from the purges steerd made: each CDN target's
//! `recent_purge_ratio` over the last 5 minutes (`purge::recent`), where no fresh cache report
//! gives one (a pushed report wins: it knows the CDN's cache, steerd only its own purges).

use crate::config::Target;
use crate::policy::chain::TargetInput;
use crate::purge::recent::RecentHandle;

use super::Control;
use super::live::Live;

impl Control {
    /// Reads purges confirmed by the purger from now on (called once it runs).
    pub fn set_recent_purges(&self, recent: RecentHandle) {
        self.inner.lock().live.purges = Some(recent);
    }
}

/// Sets `input`'s purge ratio (all clients', and each region's) from `t`'s recent purges at
/// `wall_ms`, where no report gave one.
pub(super) fn overlay(live: &Live, t: &Target, wall_ms: u64, input: &mut TargetInput) {
    let (Some(recent), Some(pc)) = (&live.purges, &t.purge) else {
        return;
    };
    let Some(ratio) = recent.lock().ratio(&t.name, wall_ms, pc.purge_ratio_half) else {
        return;
    };
    let caches =
        std::iter::once(&mut input.cache).chain(input.cache_by_region.iter_mut().map(|(_, c)| c));
    for c in caches {
        if c.purge_ratio_from != "report" {
            c.purge_ratio = ratio;
            c.purge_ratio_from = "purges";
        }
    }
}
