//! What a purge is once accepted: its request, and per CDN target how far it got. These are
//! the records the store keeps and the API shows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::provider::Item;
use crate::config::purge::Priority;

/// A purge as accepted: what to drop, how, and from which targets (resolved: every target
/// with `[targets.purge]` when the request named none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeRequest {
    pub items: Vec<Item>,
    pub soft: bool,
    #[serde(with = "priority_str")]
    pub priority: Priority,
    pub targets: Vec<String>,
    pub idempotency_key: Option<String>,
}

/// Where a purge stands on one CDN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CdnState {
    /// Accepted, nothing sent yet.
    Queued,
    /// Sent; the provider has not confirmed every item yet.
    Sent,
    /// Every item confirmed by the provider.
    Confirmed,
    /// A send failed and will be tried again.
    Retrying,
    /// Given up: an item was refused for good or the give-up age passed.
    Failed,
}

impl CdnState {
    pub const ALL: [CdnState; 5] = [
        CdnState::Queued,
        CdnState::Sent,
        CdnState::Confirmed,
        CdnState::Retrying,
        CdnState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CdnState::Queued => "queued",
            CdnState::Sent => "sent",
            CdnState::Confirmed => "confirmed",
            CdnState::Retrying => "retrying",
            CdnState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<CdnState> {
        CdnState::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn finished(self) -> bool {
        matches!(self, CdnState::Confirmed | CdnState::Failed)
    }
}

/// Provider ids and errors kept per CDN, at most.
pub const MAX_KEPT: usize = 20;

/// One purge on one CDN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdnProgress {
    pub state: CdnState,
    /// Requests sent for this purge (a request shared with other purges counts for each).
    pub attempts: u32,
    /// Items of the request this CDN has confirmed, and failed for good (bitsets over the
    /// request's item indices).
    pub done: Bits,
    pub failed: Bits,
    /// The provider's ids (purge ids, invalidation ids), the latest last.
    pub provider_ids: Vec<String>,
    /// The latest errors, the latest last.
    pub errors: Vec<String>,
    pub first_sent_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    /// When the next retry is due (while `Retrying`).
    pub next_retry_ms: Option<u64>,
    /// The canaries fetched through this CDN after it confirmed (`[purge] verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// What fetching a confirmed purge's canaries through one CDN found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Every canary showed a cache miss or the origin's version.
    pub verified: bool,
    /// Unix milliseconds.
    pub checked_ms: u64,
    pub canaries: Vec<CanaryCheck>,
}

/// One canary's verdict: verified or not, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryCheck {
    pub url: String,
    pub verified: bool,
    pub detail: String,
}

impl CdnProgress {
    pub fn new(items: usize) -> CdnProgress {
        CdnProgress {
            state: CdnState::Queued,
            attempts: 0,
            done: Bits::new(items),
            failed: Bits::new(items),
            provider_ids: Vec::new(),
            errors: Vec::new(),
            first_sent_ms: None,
            finished_ms: None,
            next_retry_ms: None,
            verification: None,
        }
    }

    /// Items neither confirmed nor failed.
    pub fn open(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.done.len() as u32).filter(|&i| !self.done.get(i) && !self.failed.get(i))
    }

    pub fn push_id(&mut self, id: String) {
        if self.provider_ids.last() != Some(&id) {
            keep_last(&mut self.provider_ids, id);
        }
    }

    pub fn push_error(&mut self, e: String) {
        keep_last(&mut self.errors, e);
    }
}

fn keep_last(v: &mut Vec<String>, s: String) {
    if v.len() >= MAX_KEPT {
        v.remove(0);
    }
    v.push(s);
}

/// A purge and its progress on every target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeRecord {
    pub id: u64,
    /// Unix milliseconds.
    pub accepted_ms: u64,
    pub request: PurgeRequest,
    pub cdns: BTreeMap<String, CdnProgress>,
}

impl PurgeRecord {
    /// The purge's state as one word: failed if any CDN failed, confirmed when all did,
    /// else the least advanced CDN's state.
    pub fn state(&self) -> CdnState {
        let states: Vec<CdnState> = self.cdns.values().map(|c| c.state).collect();
        if states.contains(&CdnState::Failed) && states.iter().all(|s| s.finished()) {
            CdnState::Failed
        } else if states.iter().all(|s| *s == CdnState::Confirmed) {
            CdnState::Confirmed
        } else if states.contains(&CdnState::Retrying) {
            CdnState::Retrying
        } else if states.contains(&CdnState::Queued) {
            CdnState::Queued
        } else {
            CdnState::Sent
        }
    }

    pub fn finished(&self) -> bool {
        self.cdns.values().all(|c| c.state.finished())
    }
}

/// A fixed-size bitset, stored as hex words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bits {
    len: usize,
    words: Vec<u64>,
}

impl Bits {
    pub fn new(len: usize) -> Bits {
        Bits {
            len,
            words: vec![0; len.div_ceil(64)],
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: u32) -> bool {
        let i = i as usize;
        i < self.len && self.words[i / 64] & (1 << (i % 64)) != 0
    }

    pub fn set(&mut self, i: u32) {
        let i = i as usize;
        if i < self.len {
            self.words[i / 64] |= 1 << (i % 64);
        }
    }

    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }
}

mod priority_str {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::config::purge::Priority;

    pub fn serialize<S: Serializer>(p: &Priority, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Priority, D::Error> {
        let s = String::deserialize(d)?;
        Priority::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("no priority {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_and_open_items() {
        let mut p = CdnProgress::new(130);
        p.done.set(0);
        p.done.set(129);
        p.failed.set(64);
        p.done.set(500);
        assert_eq!(p.done.count(), 2);
        assert_eq!(p.open().count(), 127);
        assert!(!p.open().any(|i| i == 64 || i == 129));
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<CdnProgress>(&json).unwrap(), p);
    }

    #[test]
    fn record_state_summarises_the_cdns() {
        let req = PurgeRequest {
            items: vec![Item::Everything],
            soft: false,
            priority: Priority::High,
            targets: vec!["a".into(), "b".into()],
            idempotency_key: None,
        };
        let mut r = PurgeRecord {
            id: 1,
            accepted_ms: 0,
            request: req,
            cdns: [("a", 1), ("b", 1)]
                .map(|(n, k)| (n.to_string(), CdnProgress::new(k)))
                .into(),
        };
        assert_eq!(r.state(), CdnState::Queued);
        r.cdns.get_mut("a").unwrap().state = CdnState::Confirmed;
        r.cdns.get_mut("b").unwrap().state = CdnState::Retrying;
        assert_eq!(r.state(), CdnState::Retrying);
        r.cdns.get_mut("b").unwrap().state = CdnState::Failed;
        assert_eq!(r.state(), CdnState::Failed);
        assert!(r.finished());
        r.cdns.get_mut("b").unwrap().state = CdnState::Confirmed;
        assert_eq!(r.state(), CdnState::Confirmed);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"priority\":\"high\""), "{json}");
        assert_eq!(serde_json::from_str::<PurgeRecord>(&json).unwrap(), r);
    }
}
