//! The surrogate-key registry: which URLs each surrogate key tags, for the CDNs that cannot
//! purge by key themselves (CloudFront, an `http` edge with `key_method = "urls"`), and which
//! keys sit below a hierarchical key (`site:acme` → `site:acme:blog`) for those that can.
//!
//! Keys are hierarchical on `:` boundaries: `site:acme` covers `site:acme:blog` and
//! `site:acme:blog:2024`, never `site:acmex`. The registry is filled through the admin API
//! (`/v1/purges/keys/{key}`) or learned from the origin's `Surrogate-Key` (space-separated)
//! and `Cache-Tag` (comma-separated) answer headers ([`Registry::learn`]).
//!
//! Two tables in the purge store's redb database, changed together in one transaction:
//! `registry_key_urls` ((key, url) → (), the relation, ordered so a key's URLs and its
//! descendants are ranges) and `registry_url_keys` (url → that URL's keys and when they were
//! last set, so a URL's keys can be replaced). The number of URLs is bounded
//! (`purge.registry_max_urls`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::store::{Store, StoreError};

const KEY_URLS: TableDefinition<(&str, &str), ()> = TableDefinition::new("registry_key_urls");
const URL_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("registry_url_keys");

/// Most keys one URL may carry (more in an answer's headers are ignored; more through the API
/// are refused).
pub const MAX_KEYS_PER_URL: usize = 256;
/// Longest key, and longest URL, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
pub const MAX_URL_LEN: usize = 8192;

/// Why the registry refused a change.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Bad input: the field and the reason.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The registry holds `purge.registry_max_urls` URLs already.
    #[error(
        "the surrogate-key registry is full: it holds {max} URLs (purge.registry_max_urls); \
         {url:?} was not added"
    )]
    Full { max: usize, url: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn err(what: &str, e: impl Into<redb::Error>) -> StoreError {
    StoreError::new(format!("registry {what}: {}", e.into()))
}

/// Why `key` is no surrogate key: printable, without spaces or commas, 1 to 1,024 bytes, not
/// beginning or ending with `:`.
pub fn key_problem(key: &str) -> Option<String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Some(format!(
            "must be 1 to {MAX_KEY_LEN} bytes (got {})",
            key.len()
        ));
    }
    if key
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ',')
    {
        return Some("must be printable characters without spaces or commas".into());
    }
    if key.starts_with(':') || key.ends_with(':') {
        return Some("must not begin or end with ':' (the hierarchy's separator)".into());
    }
    None
}

/// Why `url` cannot be registered: an absolute http(s) URL with a host, at most 8,192 bytes.
pub fn url_problem(url: &str) -> Option<String> {
    if url.len() > MAX_URL_LEN {
        return Some(format!("longer than {MAX_URL_LEN} bytes"));
    }
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => None,
        _ => Some("is not an absolute http(s) URL".into()),
    }
}

/// Whether `key` is `ancestor` or below it on a `:` boundary.
pub fn covers(ancestor: &str, key: &str) -> bool {
    key == ancestor
        || (key.len() > ancestor.len()
            && key.starts_with(ancestor)
            && key.as_bytes()[ancestor.len()] == b':')
}

/// The surrogate keys an origin's answer names: every `Surrogate-Key` header split on spaces
/// (Fastly, Varnish xkey) and every `Cache-Tag` header split on commas (Cloudflare, Akamai),
/// deduplicated in order of appearance, invalid keys left out, at most
/// [`MAX_KEYS_PER_URL`]. None when the answer has neither header (a CDN in between may have
/// removed them: that says nothing about the URL's keys).
pub fn keys_from_headers(headers: &http::HeaderMap) -> Option<Vec<String>> {
    let sk = headers.get_all("surrogate-key");
    let ct = headers.get_all("cache-tag");
    if sk.iter().next().is_none() && ct.iter().next().is_none() {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    let mut push = |k: &str| {
        let k = k.trim();
        if key_problem(k).is_none() && !out.iter().any(|o| o == k) && out.len() < MAX_KEYS_PER_URL {
            out.push(k.to_string());
        }
    };
    for v in sk.iter().filter_map(|v| v.to_str().ok()) {
        v.split_ascii_whitespace().for_each(&mut push);
    }
    for v in ct.iter().filter_map(|v| v.to_str().ok()) {
        v.split(',').for_each(&mut push);
    }
    Some(out)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct UrlRow {
    keys: Vec<String>,
    updated_ms: u64,
}

/// What a key expands into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The URLs of the key and of every key below it, each once.
    pub urls: BTreeSet<String>,
    /// The registered keys below it (not the key itself).
    pub descendants: BTreeSet<String>,
}

/// One key of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub key: String,
    pub urls: usize,
}

/// The registry, over the purge store.
#[derive(Clone)]
pub struct Registry {
    store: Arc<Store>,
    max_urls: usize,
}

/// Exclusive upper bound of the (key, url) rows of `key` (keys hold no control characters).
fn after(key: &str) -> String {
    format!("{key}\u{0}")
}

impl Registry {
    /// The registry in `store`'s database (its tables made when missing).
    pub fn open(store: Arc<Store>, max_urls: usize) -> Result<Registry, StoreError> {
        let w = store.db().begin_write().map_err(|e| err("begin", e))?;
        w.open_table(KEY_URLS).map_err(|e| err("table", e))?;
        w.open_table(URL_KEYS).map_err(|e| err("table", e))?;
        w.commit().map_err(|e| err("commit", e))?;
        Ok(Registry { store, max_urls })
    }

    /// The URLs of `key` alone.
    pub fn urls(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let r = self.store.db().begin_read().map_err(|e| err("begin", e))?;
        let t = r.open_table(KEY_URLS).map_err(|e| err("table", e))?;
        let hi = after(key);
        let mut out = Vec::new();
        for row in t
            .range((key, "")..(hi.as_str(), ""))
            .map_err(|e| err("read", e))?
        {
            let (k, _) = row.map_err(|e| err("read", e))?;
            out.push(k.value().1.to_string());
        }
        Ok(out)
    }

    /// The URLs of every registered key below `key` (not `key` itself), by key.
    pub fn descendant_urls(&self, key: &str) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
        let r = self.store.db().begin_read().map_err(|e| err("begin", e))?;
        let t = r.open_table(KEY_URLS).map_err(|e| err("table", e))?;
        let (lo, hi) = (format!("{key}:"), format!("{key};"));
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in t
            .range((lo.as_str(), "")..(hi.as_str(), ""))
            .map_err(|e| err("read", e))?
        {
            let (k, _) = row.map_err(|e| err("read", e))?;
            let (k, u) = k.value();
            out.entry(k.to_string()).or_default().push(u.to_string());
        }
        Ok(out)
    }

    /// `key` expanded: its URLs and those of every key below it, and those keys.
    pub fn expand(&self, key: &str) -> Result<Expansion, StoreError> {
        let mut x = Expansion {
            urls: self.urls(key)?.into_iter().collect(),
            descendants: BTreeSet::new(),
        };
        for (k, urls) in self.descendant_urls(key)? {
            x.urls.extend(urls);
            x.descendants.insert(k);
        }
        Ok(x)
    }

    /// Keys beginning with `prefix` (plain string prefix), after `after` when given, at most
    /// `limit`, each with its number of URLs.
    pub fn keys(
        &self,
        prefix: &str,
        after_key: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyInfo>, StoreError> {
        let r = self.store.db().begin_read().map_err(|e| err("begin", e))?;
        let t = r.open_table(KEY_URLS).map_err(|e| err("table", e))?;
        let start = match after_key {
            Some(a) if a >= prefix => after(a),
            _ => prefix.to_string(),
        };
        let mut out: Vec<KeyInfo> = Vec::new();
        for row in t
            .range((start.as_str(), "")..)
            .map_err(|e| err("read", e))?
        {
            let (k, _) = row.map_err(|e| err("read", e))?;
            let key = k.value().0;
            if !key.starts_with(prefix) {
                break;
            }
            match out.last_mut() {
                Some(last) if last.key == key => last.urls += 1,
                _ => {
                    if out.len() >= limit {
                        break;
                    }
                    out.push(KeyInfo {
                        key: key.to_string(),
                        urls: 1,
                    });
                }
            }
        }
        Ok(out)
    }

    /// URLs registered (with at least one key).
    pub fn len(&self) -> Result<u64, StoreError> {
        let r = self.store.db().begin_read().map_err(|e| err("begin", e))?;
        let t = r.open_table(URL_KEYS).map_err(|e| err("table", e))?;
        t.len().map_err(|e| err("read", e))
    }

    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Sets the URLs of `key`: exactly `urls` when `replace`, else `urls` added to those it
    /// has. Checked first (each URL, the size bound); nothing is changed when one fails.
    pub fn set_key(
        &self,
        key: &str,
        urls: &[String],
        replace: bool,
        now_ms: u64,
    ) -> Result<(), RegistryError> {
        if let Some(reason) = key_problem(key) {
            return Err(RegistryError::Invalid {
                field: "key".into(),
                reason,
            });
        }
        for (i, u) in urls.iter().enumerate() {
            if let Some(reason) = url_problem(u) {
                return Err(RegistryError::Invalid {
                    field: format!("urls[{i}]"),
                    reason: format!("{u:?} {reason}"),
                });
            }
        }
        let old: BTreeSet<String> = self.urls(key)?.into_iter().collect();
        let new: BTreeSet<String> = urls.iter().cloned().collect();
        let mut changes: Vec<(String, bool)> = Vec::new();
        if replace {
            changes.extend(old.difference(&new).map(|u| (u.clone(), false)));
        }
        changes.extend(new.difference(&old).map(|u| (u.clone(), true)));
        self.commit(|w| {
            for (url, add) in &changes {
                let mut row = w.row(url)?;
                if *add {
                    if row.keys.len() >= MAX_KEYS_PER_URL {
                        return Err(RegistryError::Invalid {
                            field: "urls".into(),
                            reason: format!(
                                "{url:?} has {MAX_KEYS_PER_URL} keys already, the most one URL may have"
                            ),
                        });
                    }
                    row.keys.push(key.to_string());
                } else {
                    row.keys.retain(|k| k != key);
                }
                row.updated_ms = now_ms;
                w.put(url, &row)?;
            }
            Ok(())
        })
    }

    /// Removes `key` (its URLs keep their other keys). Whether it had any.
    pub fn delete_key(&self, key: &str, now_ms: u64) -> Result<bool, RegistryError> {
        let old = self.urls(key)?;
        if old.is_empty() {
            return Ok(false);
        }
        self.set_key(key, &[], true, now_ms)?;
        Ok(true)
    }

    /// Replaces the keys of `url` with `keys` (learned from an answer's headers): the URL
    /// leaves the keys it no longer has and joins the new ones. Keys that are no keys are
    /// refused, naming them.
    pub fn set_url_keys(
        &self,
        url: &str,
        keys: &[String],
        now_ms: u64,
    ) -> Result<(), RegistryError> {
        if let Some(reason) = url_problem(url) {
            return Err(RegistryError::Invalid {
                field: "url".into(),
                reason: format!("{url:?} {reason}"),
            });
        }
        for (i, k) in keys.iter().enumerate() {
            if let Some(reason) = key_problem(k) {
                return Err(RegistryError::Invalid {
                    field: format!("keys[{i}]"),
                    reason,
                });
            }
        }
        let mut keys: Vec<String> = keys.iter().fold(Vec::new(), |mut v, k| {
            if !v.contains(k) {
                v.push(k.clone());
            }
            v
        });
        keys.truncate(MAX_KEYS_PER_URL);
        self.commit(|w| {
            let mut row = w.row(url)?;
            let (old, new): (BTreeSet<&String>, BTreeSet<&String>) =
                (row.keys.iter().collect(), keys.iter().collect());
            for k in old.difference(&new) {
                w.pairs
                    .remove((k.as_str(), url))
                    .map_err(|e| err("write", e))?;
            }
            for k in new.difference(&old) {
                w.pairs
                    .insert((k.as_str(), url), ())
                    .map_err(|e| err("write", e))?;
            }
            row.keys = keys.clone();
            row.updated_ms = now_ms;
            w.put_row_only(url, &row)
        })
    }

    /// Learns `url`'s keys from its answer's headers ([`keys_from_headers`]) and records them
    /// in place of those it had. Returns the keys recorded; None (nothing changed) when the
    /// answer had neither header. One store commit: blocking.
    pub fn learn(
        &self,
        url: &str,
        headers: &http::HeaderMap,
        now_ms: u64,
    ) -> Result<Option<Vec<String>>, RegistryError> {
        let Some(keys) = keys_from_headers(headers) else {
            return Ok(None);
        };
        self.set_url_keys(url, &keys, now_ms)?;
        Ok(Some(keys))
    }

    /// Runs `f` in one write transaction, committed when it succeeds.
    fn commit(
        &self,
        f: impl FnOnce(&mut Writer<'_>) -> Result<(), RegistryError>,
    ) -> Result<(), RegistryError> {
        let tx = self.store.db().begin_write().map_err(|e| err("begin", e))?;
        {
            let mut w = Writer {
                pairs: tx.open_table(KEY_URLS).map_err(|e| err("table", e))?,
                rows: tx.open_table(URL_KEYS).map_err(|e| err("table", e))?,
                max: self.max_urls,
            };
            f(&mut w)?;
        }
        tx.commit().map_err(|e| err("commit", e))?;
        Ok(())
    }
}

/// The registry's tables within one write transaction.
struct Writer<'t> {
    pairs: redb::Table<'t, (&'static str, &'static str), ()>,
    rows: redb::Table<'t, &'static str, &'static [u8]>,
    max: usize,
}

impl Writer<'_> {
    fn row(&self, url: &str) -> Result<UrlRow, RegistryError> {
        match self.rows.get(url).map_err(|e| err("read", e))? {
            Some(v) => Ok(serde_json::from_slice(v.value())
                .map_err(|e| StoreError::new(format!("registry row of {url:?}: {e}")))?),
            None => Ok(UrlRow::default()),
        }
    }

    /// Writes `url`'s row and its pairs with the key set just changed in `row` (the pair of
    /// each key of `row` is made, those of keys it lost are the caller's to remove).
    fn put(&mut self, url: &str, row: &UrlRow) -> Result<(), RegistryError> {
        let had: BTreeSet<String> = self.row(url)?.keys.into_iter().collect();
        let has: BTreeSet<&String> = row.keys.iter().collect();
        for k in &had {
            if !has.contains(k) {
                self.pairs
                    .remove((k.as_str(), url))
                    .map_err(|e| err("write", e))?;
            }
        }
        for k in &row.keys {
            if !had.contains(k) {
                self.pairs
                    .insert((k.as_str(), url), ())
                    .map_err(|e| err("write", e))?;
            }
        }
        self.put_row_only(url, row)
    }

    /// Writes (or, with no keys left, removes) `url`'s row, refusing a new URL beyond the
    /// bound.
    fn put_row_only(&mut self, url: &str, row: &UrlRow) -> Result<(), RegistryError> {
        if row.keys.is_empty() {
            self.rows.remove(url).map_err(|e| err("write", e))?;
            return Ok(());
        }
        let exists = self.rows.get(url).map_err(|e| err("read", e))?.is_some();
        if !exists && self.rows.len().map_err(|e| err("read", e))? >= self.max as u64 {
            return Err(RegistryError::Full {
                max: self.max,
                url: url.to_string(),
            });
        }
        let json = serde_json::to_vec(row).expect("registry rows serialise");
        self.rows
            .insert(url, json.as_slice())
            .map_err(|e| err("write", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
