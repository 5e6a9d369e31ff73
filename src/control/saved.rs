//! What outlives a restart: the figures [`crate::persist`] writes, taken from and given back
//! to the control plane, and the [`Saver`] task that keeps the file up to date.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use tracing::{info, warn};

use crate::persist::{LoadError, SAVE_EVERY, Saved, load, save, set_aside};

use super::compile::Swap;
use super::{CacheReport, Control};

impl Control {
    /// What [`crate::persist`] saves: this month's answers, billing reports and cache metrics
    /// of the targets of the configuration in force.
    pub fn saved_state(&self) -> crate::persist::Saved {
        let now_ms = self.now().wall_ms;
        let st = self.inner.lock();
        let month = crate::policy::cost::Month::containing(now_ms).start_ms;
        let totals = st.live.counters.totals();
        let answers = st
            .config
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let n = if st.live.month_base.0 == month {
                    let base = st.live.month_base.1.get(i).copied().unwrap_or(0);
                    totals.get(i).copied().unwrap_or(0).saturating_sub(base)
                } else {
                    // The month turned since the last compile: nothing answered in it yet.
                    0
                };
                (t.name.clone(), n)
            })
            .collect();
        crate::persist::Saved {
            format: crate::persist::FORMAT,
            saved_at_ms: now_ms,
            month_start_ms: month,
            answers,
            usage: st.live.usage.clone(),
            cache: st.live.cache_reports.clone(),
            cache_regions: st.live.cache_regions.clone(),
        }
    }

    /// Take back what an earlier run saved: billing reports and cache metrics of targets that
    /// still exist, and their answer counts when they are of this month. Applied at once (one
    /// compile). What was taken, in words.
    pub fn restore_state(&self, saved: crate::persist::Saved) -> String {
        let now = self.now();
        let now_ms = now.wall_ms;
        let mut st = self.inner.lock();
        let month = crate::policy::cost::Month::containing(now_ms).start_ms;
        if st.live.month_base.0 != month {
            st.live.month_base = (month, st.live.counters.totals());
        }
        let names: Vec<String> = st.config.targets.iter().map(|t| t.name.clone()).collect();
        let mut answers = 0;
        if saved.month_start_ms == month {
            for (i, name) in names.iter().enumerate() {
                if let Some(&n) = saved.answers.get(name)
                    && n > 0
                {
                    st.live.counters.add(i, n);
                    answers += 1;
                }
            }
        }
        let mut usage = 0;
        for (name, u) in saved.usage {
            if names.contains(&name) {
                st.live.usage.insert(name, u);
                usage += 1;
            }
        }
        let mut cache = 0;
        // Their age goes on from when they were received.
        let received = |mut c: CacheReport| {
            c.received_ms = now.mono_of(c.at_ms);
            c
        };
        for (name, c) in saved.cache {
            if names.contains(&name) {
                st.live.cache_reports.insert(name, received(c));
                cache += 1;
            }
        }
        for (name, regions) in saved.cache_regions {
            if names.contains(&name) {
                cache += regions.len();
                let kept = regions.into_iter().map(|(r, c)| (r, received(c))).collect();
                st.live.cache_regions.insert(name, kept);
            }
        }
        self.compile_locked(&mut st, now, Swap::IfChanged);
        format!(
            "this month's answers of {answers} target(s), {usage} usage report(s), {cache} cache report(s)"
        )
    }
}

/// Keeps the state file up to date: written at start, then whenever its figures changed.
pub struct Saver {
    path: PathBuf,
    control: Control,
    /// The figures last written (or read at start), and whether the last write failed (one
    /// warning per failing stretch, not one every interval).
    last: Mutex<(Saved, bool)>,
}

impl Saver {
    /// Take back the state at `path` and start keeping it there. The state is written at
    /// once, so a place steerd cannot write to shows at start. A file that does not parse
    /// or fails its checks is moved aside; one that cannot be read at all (permissions, I/O)
    /// is left alone and nothing is kept (None), so that it is never replaced. Blocking.
    pub fn open(path: PathBuf, control: Control) -> Option<Saver> {
        let now = control.now().wall_ms;
        match load(&path, now) {
            Ok(Some(saved)) => {
                let took = control.restore_state(saved);
                info!(path = %path.display(), "state restored: {took}");
            }
            Ok(None) => {}
            Err(LoadError::Invalid(e)) => match set_aside(&path, now) {
                Ok(aside) => warn!(
                    "{e}: starting without it (the file was moved to {})",
                    aside.display()
                ),
                Err(m) => {
                    warn!("{e}: starting without it, and keeping none (cannot move it aside: {m})");
                    return None;
                }
            },
            Err(LoadError::Unreadable(e)) => {
                warn!("{e}: starting without it, and keeping none (the file is left as it is)");
                return None;
            }
        }
        let saved = control.saved_state();
        let failing = match save(&path, &saved) {
            Ok(()) => false,
            Err(e) => {
                warn!(path = %path.display(), "cannot write the state file: {e}; this month's answer counts and reported usage will not outlive a restart (set server.state_file to a writable place)");
                true
            }
        };
        Some(Saver {
            path,
            control,
            last: Mutex::new((saved, failing)),
        })
    }

    /// Write the state if its figures changed since the last write; Ok when the file holds
    /// them. Blocking. The snapshot is taken under the lock, so snapshots are written in the
    /// order they were taken.
    pub fn save(&self) -> Result<(), String> {
        let mut last = self.last.lock();
        let saved = self.control.saved_state();
        if saved.same_figures(&last.0) {
            return Ok(());
        }
        match save(&self.path, &saved) {
            Ok(()) => {
                if last.1 {
                    info!(path = %self.path.display(), "state saved again");
                }
                *last = (saved, false);
                Ok(())
            }
            Err(e) => {
                if !last.1 {
                    warn!(path = %self.path.display(), "cannot save the state: {e}");
                }
                last.1 = true;
                Err(format!("{}: {e}", self.path.display()))
            }
        }
    }
}

/// Save the state every [`SAVE_EVERY`] (a task of the running server).
pub async fn save_loop(saver: Arc<Saver>) {
    let mut every = tokio::time::interval(SAVE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let s = saver.clone();
        let _ = tokio::task::spawn_blocking(move || s.save()).await;
    }
}
