//! `steerd probe`: every check run once, and the table of levels it prints.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::check::Checker;
use super::plan::ProbePlan;
use super::run::{Outcome, RunResult, fmt_ms};

/// Run every job of `plan` once, `plan.concurrency` at a time; results in plan order.
pub async fn run_once(plan: &ProbePlan) -> Vec<RunResult> {
    let checker = Arc::new(Checker::new());
    let sem = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let mut tasks = Vec::new();
    for (name, spec) in &plan.jobs {
        let (checker, sem, name, spec) = (checker.clone(), sem.clone(), name.clone(), spec.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.ok();
            checker.run(&name, &spec).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        if let Ok(r) = t.await {
            out.push(r);
        }
    }
    out
}

/// A table of runs: one row per target and level.
pub fn format_table(runs: &[RunResult]) -> String {
    let mut rows: Vec<[String; 5]> = vec![[
        "TARGET".into(),
        "LEVEL".into(),
        "STATE".into(),
        "LATENCY".into(),
        "DETAIL".into(),
    ]];
    for r in runs {
        for l in &r.levels {
            let latency = if l.outcome == Outcome::NotReached {
                "-".to_string()
            } else {
                fmt_ms(l.latency)
            };
            rows.push([
                r.target.to_string(),
                l.level.to_string(),
                l.outcome.as_str().to_string(),
                latency,
                l.detail.clone(),
            ]);
        }
        let state = if r.ok() {
            "ok"
        } else if r.local_error().is_some() {
            "local error"
        } else {
            "FAIL"
        };
        rows.push([
            r.target.to_string(),
            "check".into(),
            state.into(),
            fmt_ms(r.total),
            r.summary(),
        ]);
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if i < 4 {
                let pad = widths[i] - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            } else {
                out.push_str(cell);
            }
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
    }
    out
}
