//! The durable store of purges: an embedded redb database (copy-on-write B-trees, every commit
//! fsynced, a crash at any moment leaves the last committed state). A purge is committed here
//! before the API acknowledges it; each CDN's progress is committed after each request's
//! answer, so a restart resumes exactly the items not yet confirmed.
//!
//! Tables: `requests` (id → the accepted request, written once), `progress` ((id, target) →
//! that CDN's progress), `open` (ids of unfinished purges), `idempotency` (key → id) and
//! `meta` (the next id). The surrogate-key registry keeps its own tables in the same
//! database (`registry`).

use std::collections::BTreeMap;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::model::{CdnProgress, PurgeRecord, PurgeRequest};

const REQUESTS: TableDefinition<u64, &[u8]> = TableDefinition::new("requests");
const PROGRESS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("progress");
const OPEN: TableDefinition<u64, ()> = TableDefinition::new("open");
const IDEMPOTENCY: TableDefinition<&str, u64> = TableDefinition::new("idempotency");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// (month `YYYY-MM`, target) → that target's purge usage that month (`usage::Counters`).
const USAGE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("usage");

/// A store error, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("purge store: {0}")]
pub struct StoreError(String);

impl StoreError {
    pub fn new(s: String) -> StoreError {
        StoreError(s)
    }
}

macro_rules! tri {
    ($e:expr, $what:expr) => {
        $e.map_err(|e| StoreError(format!("{}: {}", $what, redb::Error::from(e))))?
    };
}

#[derive(Serialize, Deserialize)]
struct StoredRequest {
    accepted_ms: u64,
    request: PurgeRequest,
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("purge records serialise")
}

fn parse<T: for<'de> Deserialize<'de>>(b: &[u8], what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError(format!("{what}: {e}")))
}

/// What [`Store::insert`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    New(u64),
    /// The idempotency key was used before, by this purge.
    Existing(u64),
}

pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path)
            .map_err(|e| StoreError(format!("opening {}: {e}", path.display())))?;
        let w = tri!(db.begin_write(), "begin");
        {
            tri!(w.open_table(REQUESTS), "requests");
            tri!(w.open_table(PROGRESS), "progress");
            tri!(w.open_table(OPEN), "open");
            tri!(w.open_table(IDEMPOTENCY), "idempotency");
            tri!(w.open_table(META), "meta");
        }
        tri!(w.commit(), "commit");
        Ok(Store { db })
    }

    /// The database, for the surrogate-key registry's tables (`registry`).
    pub(super) fn db(&self) -> &Database {
        &self.db
    }

    /// Commits a new purge (or finds the one its idempotency key names): when this returns
    /// `New`, the purge survives any crash.
    pub fn insert(&self, accepted_ms: u64, request: &PurgeRequest) -> Result<Inserted, StoreError> {
        let w = tri!(self.db.begin_write(), "begin");
        let id;
        {
            let mut idem = tri!(w.open_table(IDEMPOTENCY), "idempotency");
            if let Some(k) = &request.idempotency_key
                && let Some(old) = tri!(idem.get(k.as_str()), "idempotency")
            {
                return Ok(Inserted::Existing(old.value()));
            }
            let mut meta = tri!(w.open_table(META), "meta");
            id = tri!(meta.get("next_id"), "meta").map_or(1, |v| v.value());
            tri!(meta.insert("next_id", id + 1), "meta");
            if let Some(k) = &request.idempotency_key {
                tri!(idem.insert(k.as_str(), id), "idempotency");
            }
            let mut reqs = tri!(w.open_table(REQUESTS), "requests");
            let stored = json(&StoredRequest {
                accepted_ms,
                request: request.clone(),
            });
            tri!(reqs.insert(id, stored.as_slice()), "requests");
            let mut prog = tri!(w.open_table(PROGRESS), "progress");
            let fresh = json(&CdnProgress::new(request.items.len()));
            for t in &request.targets {
                tri!(prog.insert((id, t.as_str()), fresh.as_slice()), "progress");
            }
            let mut open = tri!(w.open_table(OPEN), "open");
            tri!(open.insert(id, ()), "open");
        }
        tri!(w.commit(), "commit");
        Ok(Inserted::New(id))
    }

    /// Commits the progress of several (purge, target) pairs in one transaction; a purge all
    /// of whose targets are finished leaves the open set.
    pub fn update(&self, changes: &[(u64, String, CdnProgress)]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let w = tri!(self.db.begin_write(), "begin");
        {
            let mut prog = tri!(w.open_table(PROGRESS), "progress");
            for (id, t, p) in changes {
                tri!(
                    prog.insert((*id, t.as_str()), json(p).as_slice()),
                    "progress"
                );
            }
            let mut open = tri!(w.open_table(OPEN), "open");
            let ids: std::collections::BTreeSet<u64> = changes.iter().map(|c| c.0).collect();
            for id in ids {
                let mut finished = true;
                for row in tri!(prog.range((id, "")..(id + 1, "")), "progress") {
                    let (_, v) = tri!(row, "progress");
                    let p: CdnProgress = parse(v.value(), "progress")?;
                    finished &= p.state.finished();
                }
                if finished {
                    tri!(open.remove(id), "open");
                }
            }
        }
        tri!(w.commit(), "commit");
        Ok(())
    }

    /// One purge with its progress.
    pub fn get(&self, id: u64) -> Result<Option<PurgeRecord>, StoreError> {
        let r = tri!(self.db.begin_read(), "begin");
        let reqs = tri!(r.open_table(REQUESTS), "requests");
        let Some(stored) = tri!(reqs.get(id), "requests") else {
            return Ok(None);
        };
        let stored: StoredRequest = parse(stored.value(), "request")?;
        let prog = tri!(r.open_table(PROGRESS), "progress");
        let mut cdns = BTreeMap::new();
        for row in tri!(prog.range((id, "")..(id + 1, "")), "progress") {
            let (k, v) = tri!(row, "progress");
            cdns.insert(k.value().1.to_string(), parse(v.value(), "progress")?);
        }
        Ok(Some(PurgeRecord {
            id,
            accepted_ms: stored.accepted_ms,
            request: stored.request,
            cdns,
        }))
    }

    /// Ids of the purges not finished on every target, oldest first.
    pub fn open_ids(&self) -> Result<Vec<u64>, StoreError> {
        let r = tri!(self.db.begin_read(), "begin");
        let open = tri!(r.open_table(OPEN), "open");
        let mut ids = Vec::new();
        for row in tri!(open.iter(), "open") {
            ids.push(tri!(row, "open").0.value());
        }
        Ok(ids)
    }

    /// Ids of every purge kept, newest first, below `before` when given, at most `limit`.
    pub fn ids(&self, before: Option<u64>, limit: usize) -> Result<Vec<u64>, StoreError> {
        let r = tri!(self.db.begin_read(), "begin");
        let reqs = tri!(r.open_table(REQUESTS), "requests");
        let mut ids = Vec::new();
        for row in tri!(reqs.range(..before.unwrap_or(u64::MAX)), "requests").rev() {
            ids.push(tri!(row, "requests").0.value());
            if ids.len() >= limit {
                break;
            }
        }
        Ok(ids)
    }

    /// Removes the oldest finished purges beyond the newest `keep` finished ones.
    pub fn prune(&self, keep: usize) -> Result<usize, StoreError> {
        let open: std::collections::BTreeSet<u64> = self.open_ids()?.into_iter().collect();
        let finished: Vec<u64> = {
            let r = tri!(self.db.begin_read(), "begin");
            let reqs = tri!(r.open_table(REQUESTS), "requests");
            let mut v = Vec::new();
            for row in tri!(reqs.iter(), "requests") {
                let id = tri!(row, "requests").0.value();
                if !open.contains(&id) {
                    v.push(id);
                }
            }
            v
        };
        let drop = finished.len().saturating_sub(keep);
        if drop == 0 {
            return Ok(0);
        }
        let w = tri!(self.db.begin_write(), "begin");
        {
            let mut reqs = tri!(w.open_table(REQUESTS), "requests");
            let mut prog = tri!(w.open_table(PROGRESS), "progress");
            let mut idem = tri!(w.open_table(IDEMPOTENCY), "idempotency");
            let gone: std::collections::BTreeSet<u64> = finished[..drop].iter().copied().collect();
            for id in &gone {
                tri!(reqs.remove(*id), "requests");
                tri!(
                    prog.retain_in((*id, "")..(*id + 1, ""), |_, _| false),
                    "progress"
                );
            }
            tri!(idem.retain(|_, v| !gone.contains(&v)), "idempotency");
        }
        tri!(w.commit(), "commit");
        Ok(drop)
    }
}

impl Store {
    /// Commits usage counters (absolute values). `durable: false` leaves the fsync to the
    /// commit that follows (redb makes a non-durable commit durable with the next durable one).
    pub fn put_usage(
        &self,
        rows: &[(String, String, super::usage::Counters)],
        durable: bool,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut w = tri!(self.db.begin_write(), "begin");
        if !durable {
            tri!(w.set_durability(redb::Durability::None), "durability");
        }
        {
            let mut t = tri!(w.open_table(USAGE), "usage");
            for (m, target, c) in rows {
                tri!(
                    t.insert((m.as_str(), target.as_str()), json(c).as_slice()),
                    "usage"
                );
            }
        }
        tri!(w.commit(), "commit");
        Ok(())
    }

    /// Every (month, target)'s usage counters.
    pub fn usage(&self) -> Result<Vec<(String, String, super::usage::Counters)>, StoreError> {
        let r = tri!(self.db.begin_read(), "begin");
        let t = match r.open_table(USAGE) {
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            t => tri!(t, "usage"),
        };
        let mut out = Vec::new();
        for row in tri!(t.iter(), "usage") {
            let (k, v) = tri!(row, "usage");
            let (m, target) = k.value();
            out.push((
                m.to_string(),
                target.to_string(),
                parse(v.value(), "usage")?,
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::purge::Priority;
    use crate::purge::model::CdnState;
    use crate::purge::provider::Item;

    fn req(key: Option<&str>) -> PurgeRequest {
        PurgeRequest {
            items: vec![Item::Url("https://a/x".into()), Item::Key("k".into())],
            soft: false,
            priority: Priority::Normal,
            targets: vec!["a".into(), "b".into()],
            idempotency_key: key.map(String::from),
        }
    }

    #[test]
    fn insert_update_reopen_prune() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        let s = Store::open(&path).unwrap();
        assert_eq!(s.insert(5, &req(Some("k1"))).unwrap(), Inserted::New(1));
        assert_eq!(
            s.insert(6, &req(Some("k1"))).unwrap(),
            Inserted::Existing(1)
        );
        assert_eq!(s.insert(7, &req(None)).unwrap(), Inserted::New(2));
        let mut p = CdnProgress::new(2);
        p.state = CdnState::Confirmed;
        s.update(&[(1, "a".into(), p.clone())]).unwrap();
        assert_eq!(s.open_ids().unwrap(), [1, 2]);
        s.update(&[(1, "b".into(), p.clone())]).unwrap();
        assert_eq!(s.open_ids().unwrap(), [2]);
        drop(s);
        let s = Store::open(&path).unwrap();
        let r = s.get(1).unwrap().unwrap();
        assert_eq!(r.accepted_ms, 5);
        assert_eq!(r.cdns["a"].state, CdnState::Confirmed);
        assert_eq!(s.get(2).unwrap().unwrap().cdns["b"].state, CdnState::Queued);
        assert_eq!(s.ids(None, 10).unwrap(), [2, 1]);
        assert_eq!(s.ids(Some(2), 10).unwrap(), [1]);
        assert_eq!(s.prune(0).unwrap(), 1);
        assert!(s.get(1).unwrap().is_none());
        // The key went with it: a new purge may use it again.
        assert_eq!(s.insert(8, &req(Some("k1"))).unwrap(), Inserted::New(3));
    }

    #[test]
    fn usage_survives_a_reopen() {
        use crate::purge::usage::Counters;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.redb");
        let s = Store::open(&path).unwrap();
        assert!(s.usage().unwrap().is_empty());
        let c = Counters {
            items: 7,
            api_calls: 2,
            deduplicated: 1,
            calls_saved: 5,
        };
        // A non-durable commit becomes durable with the next durable one.
        s.put_usage(&[("2026-12".into(), "a".into(), c)], false)
            .unwrap();
        s.update(&[(1, "x".into(), CdnProgress::new(1))]).unwrap();
        s.put_usage(&[("2026-11".into(), "a".into(), Counters::default())], true)
            .unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        let rows = s.usage().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1], ("2026-12".into(), "a".into(), c));
    }
}
