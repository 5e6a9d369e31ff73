//! The chain's cost step: candidates over their cap demoted or dropped, those under their
//! commit preferred.

use super::spend::CostStatus;

/// What the cost step does with over-cap targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CostMode {
    /// Move them after the others (stable order otherwise).
    #[default]
    Demote,
    /// Remove them.
    Drop,
}

/// What the cost step does with targets under their commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Nothing: the commit is only reported.
    Ignore,
    /// Put them ahead of the others (the service's `prefer_commit`).
    Prefer,
}

/// Where the cost step puts a candidate, first to last (see [`apply_cost`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CostPlace {
    /// Under its commit, with [`Commit::Prefer`]: ahead of the others.
    Ahead,
    InPlace,
    /// Over its cap, with [`CostMode::Demote`]: behind the others.
    Behind,
    /// Over its cap, with [`CostMode::Drop`]: removed.
    Out,
}

/// The place of a candidate with status `s`, among candidates not all over their caps (when
/// every candidate is over its cap, every one stays in place).
pub fn cost_place(s: &CostStatus, mode: CostMode, commit: Commit) -> CostPlace {
    if s.over_cap {
        match mode {
            CostMode::Demote => CostPlace::Behind,
            CostMode::Drop => CostPlace::Out,
        }
    } else if commit == Commit::Prefer && s.under_commit {
        CostPlace::Ahead
    } else {
        CostPlace::InPlace
    }
}

/// The cost step of the policy chain: the seed rule `if spend(best) > cap: best = next_best`,
/// generalised to the whole candidate list.
///
/// `candidates` are target indices; `status` is indexed by **target index** (not by position in
/// `candidates`), so one slice computed per service serves every region's candidate list. A
/// target index beyond `status` counts as [`CostStatus::unmetered`].
///
/// Order of the result, stable within each group:
/// 1. with [`Commit::Prefer`], targets under their commit (and not over their cap);
/// 2. the other targets not over their cap;
/// 3. with [`CostMode::Demote`], targets over their cap ([`CostMode::Drop`] removes them).
///
/// A target both over its cap and under its commit counts as over its cap. When every candidate
/// is over its cap, the list is returned unchanged (nothing demoted, dropped or preferred) and
/// each candidate's reason says so. The reasons list has one line per affected target, in
/// candidate order, starting with `target {index}`.
pub fn apply_cost(
    candidates: &[usize],
    status: &[CostStatus],
    mode: CostMode,
    commit: Commit,
) -> (Vec<usize>, Vec<String>) {
    let unmetered = CostStatus::unmetered();
    let st = |t: usize| status.get(t).unwrap_or(&unmetered);
    let mut reasons = Vec::new();

    if !candidates.is_empty() && candidates.iter().all(|&t| st(t).over_cap) {
        for &t in candidates {
            reasons.push(format!(
                "target {t} kept: every candidate is over its cap; {}",
                st(t).explain()
            ));
        }
        return (candidates.to_vec(), reasons);
    }

    let mut front = Vec::with_capacity(candidates.len());
    let mut middle = Vec::with_capacity(candidates.len());
    let mut back = Vec::new();
    for &t in candidates {
        let s = st(t);
        match cost_place(s, mode, commit) {
            CostPlace::Behind => {
                back.push(t);
                reasons.push(format!("target {t} demoted: {}", s.explain()));
            }
            CostPlace::Out => reasons.push(format!("target {t} dropped: {}", s.explain())),
            CostPlace::Ahead => {
                front.push(t);
                reasons.push(format!("target {t} preferred: {}", s.explain()));
            }
            CostPlace::InPlace => middle.push(t),
        }
    }
    front.append(&mut middle);
    front.append(&mut back);
    (front, reasons)
}
