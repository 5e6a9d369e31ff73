//! Operator overrides: the configuration's `[[overrides]]` (global and per region) kept in step
//! with the machines, and overrides set through the API; each change an event.

use std::sync::Arc;

use crate::clock::Now;
use crate::config::OverrideSpec;
use crate::health::machine::{Override, TargetMachine};
use crate::table::RoutingTable;

use super::compile::Swap;
use super::events::override_event;
use super::live::Live;
use super::{Control, Inner};

/// What identifies a region override (a change of any of it is a new override).
type RegionOverrideKey = (
    String,
    Option<String>,
    crate::health::machine::OverrideKind,
    Option<u64>,
    String,
);

fn region_key(o: &OverrideSpec) -> RegionOverrideKey {
    (
        o.target.clone(),
        o.region.as_ref().map(|r| r.1.clone()),
        o.kind,
        o.until_ms,
        o.reason.clone(),
    )
}

fn region_label(o: &OverrideSpec) -> &str {
    o.region.as_ref().map(|r| r.1.as_str()).unwrap_or("")
}

impl Control {
    /// Make the machines' global overrides and the region overrides match the configuration's
    /// `[[overrides]]` (expired ones are ignored).
    pub(super) fn sync_overrides(&self, st: &mut Inner, now: Now) {
        let st = &mut *st;
        let now_ms = now.wall_ms;
        let (regional, global): (Vec<OverrideSpec>, Vec<OverrideSpec>) = st
            .config
            .overrides
            .iter()
            .filter(|o| o.until_ms.is_none_or(|u| u > now_ms))
            .cloned()
            .partition(|o| o.region.is_some());
        for t in &st.config.targets {
            let want = global
                .iter()
                .find(|o| o.target == t.name)
                .map(|o| Override {
                    kind: o.kind,
                    until_ms: o.until_ms,
                    reason: o.reason.clone(),
                    set_at_ms: o.set_at_ms,
                });
            let has = st
                .live
                .machines
                .get(t.name.as_str())
                .and_then(|m| m.current_override().cloned());
            let same = match (&want, &has) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    a.kind == b.kind && a.until_ms == b.until_ms && a.reason == b.reason
                }
                _ => false,
            };
            if !same {
                self.put_override(&mut st.live, &t.name, want, now);
            }
        }
        for o in &regional {
            if !st
                .live
                .region_overrides
                .iter()
                .any(|p| region_key(p) == region_key(o))
            {
                let mut summary = format!(
                    "{}: {} for clients in {}",
                    o.target,
                    o.kind,
                    region_label(o)
                );
                if let Some(u) = o.until_ms {
                    summary += &format!(" until {}", crate::events::rfc3339_ms(u));
                }
                if !o.reason.is_empty() {
                    summary += &format!(": {}", o.reason);
                }
                self.emit(&mut st.live, override_event(&o.target, summary, now_ms));
            }
        }
        for o in std::mem::take(&mut st.live.region_overrides) {
            if !regional.iter().any(|p| region_key(p) == region_key(&o)) {
                let summary = format!(
                    "{}: override for clients in {} ended",
                    o.target,
                    region_label(&o)
                );
                self.emit(&mut st.live, override_event(&o.target, summary, now_ms));
            }
        }
        st.live.region_overrides = regional;
    }

    /// Force a target up, down or drained (None clears it); takes effect in the returned table.
    pub fn set_override(
        &self,
        target: &str,
        o: Option<Override>,
    ) -> Result<Option<Arc<RoutingTable>>, String> {
        let now = self.now();
        let mut st = self.inner.lock();
        st.known_target(target)?;
        self.put_override(&mut st.live, target, o, now);
        Ok(self.compile_locked(&mut st, now, Swap::IfChanged))
    }

    /// Set (or clear) `target`'s override on its machine: an event, and its transitions.
    fn put_override(&self, live: &mut Live, target: &str, o: Option<Override>, now: Now) {
        let name: Arc<str> = Arc::from(target);
        let machine = live
            .machines
            .entry(name.clone())
            .or_insert_with(|| TargetMachine::new(name, now.mono_ms));
        let summary = match &o {
            Some(o) => format!("{target}: {}", o.describe(now.wall_ms)),
            None => format!("{target}: override cleared"),
        };
        let transitions = machine.set_override(o, now);
        self.emit(live, override_event(target, summary, now.wall_ms));
        for tr in transitions {
            self.record_transition(live, tr, now);
        }
    }
}
