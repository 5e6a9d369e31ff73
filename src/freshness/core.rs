//! The pure part: versions compared (the seed's version vector — the highest version wins, a
//! CDN serving a lower one is stale), per (canary, target) since when a CDN has been behind,
//! the grace before it is declared stale and its recovery, and the verdict of one verification.
//! Time is passed in (Unix ms).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::config::purge::VersionSource;
use crate::health::CacheStatus;

/// How a version compares with another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Same,
    Older,
    Newer,
    /// Different, with no order between them (ETags, text headers).
    Differs,
}

/// An ETag without its weak marker: a CDN that compresses weakens the origin's ETag.
fn strong(etag: &str) -> &str {
    etag.strip_prefix("W/").unwrap_or(etag)
}

/// `a` against `b` as `source` orders them.
pub fn compare(source: &VersionSource, a: &str, b: &str) -> Cmp {
    let ord = match source {
        VersionSource::ETag => None,
        VersionSource::LastModified => {
            match (httpdate::parse_http_date(a), httpdate::parse_http_date(b)) {
                (Ok(x), Ok(y)) => Some(x.cmp(&y)),
                _ => None,
            }
        }
        VersionSource::Header(_) => match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
            (Ok(x), Ok(y)) => x.partial_cmp(&y),
            _ => None,
        },
    };
    match ord {
        Some(Ordering::Less) => Cmp::Older,
        Some(Ordering::Greater) => Cmp::Newer,
        Some(Ordering::Equal) => Cmp::Same,
        None if strong(a) == strong(b) => Cmp::Same,
        None => Cmp::Differs,
    }
}

/// The latest version among the origin's and the CDNs' (highest wins; for an unordered
/// source the origin's), and who serves it ("origin" when the origin does).
pub fn latest<'a>(
    source: &VersionSource,
    origin: &'a str,
    cdns: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> (&'a str, &'a str) {
    let mut best = ("origin", origin);
    for (t, v) in cdns {
        if compare(source, v, best.1) == Cmp::Newer {
            best = (t, v);
        }
    }
    best
}

/// One canary's versions at one time: the origin's (None: not read) and each CDN's.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub canary: &'a str,
    /// The path shown in reasons (`/app.css`).
    pub path: &'a str,
    pub source: &'a VersionSource,
    pub origin: Option<&'a str>,
    /// (target, its version; None when the fetch failed or had no version header).
    pub cdns: Vec<(&'a str, Option<&'a str>)>,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Since when it has served an older version than the latest (Unix ms).
    behind_since: Option<u64>,
    /// Why, while behind.
    why: String,
}

/// A target whose state changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Stale since `since_ms` (when it was first seen behind), and why.
    Stale {
        target: String,
        why: String,
        since_ms: u64,
    },
    Fresh {
        target: String,
    },
}

/// Per (canary, target): since when the CDN has been behind; per target: declared stale.
#[derive(Debug, Clone, Default)]
pub struct Versions {
    entries: BTreeMap<(String, String), Entry>,
    stale: BTreeMap<String, (String, u64)>,
}

impl Versions {
    /// Take one canary's versions seen at `now_ms`. Without the origin's nothing is judged; a
    /// CDN whose version was not read keeps what it had.
    pub fn observe(&mut self, o: &Observation<'_>, now_ms: u64) {
        let Some(origin) = o.origin else { return };
        let seen = o.cdns.iter().filter_map(|(t, v)| v.map(|v| (*t, v)));
        let (who, newest) = latest(o.source, origin, seen);
        for (t, v) in &o.cdns {
            let Some(v) = v else { continue };
            let key = (o.canary.to_string(), t.to_string());
            let e = self.entries.entry(key).or_insert(Entry {
                behind_since: None,
                why: String::new(),
            });
            match compare(o.source, v, newest) {
                Cmp::Older | Cmp::Differs => {
                    e.behind_since.get_or_insert(now_ms);
                    let vs = if who == "origin" {
                        "origin".to_string()
                    } else {
                        format!("{who} (newer than the origin's {origin})")
                    };
                    e.why = format!(
                        "stale content: {} {} {v} vs {vs} {newest}",
                        o.path,
                        o.source.label()
                    );
                }
                Cmp::Same | Cmp::Newer => e.behind_since = None,
            }
        }
    }

    /// The targets whose state changes at `now_ms`: stale once a canary has been behind for
    /// `grace_ms`, fresh once none is.
    pub fn evaluate(&mut self, now_ms: u64, grace_ms: u64) -> Vec<Change> {
        let mut now_stale: BTreeMap<String, (String, u64)> = BTreeMap::new();
        for ((_, t), e) in &self.entries {
            let Some(since) = e.behind_since else {
                continue;
            };
            if now_ms.saturating_sub(since) < grace_ms {
                continue;
            }
            let earlier = now_stale.get(t).is_none_or(|(_, s)| since < *s);
            if earlier {
                now_stale.insert(t.clone(), (e.why.clone(), since));
            }
        }
        let mut out = Vec::new();
        for (t, (why, since)) in &now_stale {
            if !self.stale.contains_key(t) {
                out.push(Change::Stale {
                    target: t.clone(),
                    why: why.clone(),
                    since_ms: *since,
                });
            }
        }
        for t in self.stale.keys() {
            if !now_stale.contains_key(t) {
                out.push(Change::Fresh { target: t.clone() });
            }
        }
        self.stale = now_stale;
        out
    }

    /// Stale targets: why and since when.
    pub fn stale(&self) -> &BTreeMap<String, (String, u64)> {
        &self.stale
    }

    /// Per target, how long (s) its oldest canary has been behind (0: none is).
    pub fn behind_seconds(&self, now_ms: u64) -> BTreeMap<String, f64> {
        let mut out: BTreeMap<String, f64> = BTreeMap::new();
        for ((_, t), e) in &self.entries {
            let s = e
                .behind_since
                .map_or(0.0, |b| now_ms.saturating_sub(b) as f64 / 1000.0);
            let cur = out.entry(t.clone()).or_insert(0.0);
            *cur = cur.max(s);
        }
        out
    }

    /// Forget canaries and targets no longer configured.
    pub fn retain(&mut self, keep: impl Fn(&str, &str) -> bool) {
        self.entries.retain(|(c, t), _| keep(c, t));
    }
}

/// A canary fetched through a CDN after it confirmed a purge: verified when the cache says it
/// missed (the object came from the origin), or the CDN serves the origin's version (or a
/// newer one); why, either way.
pub fn verdict(
    source: &VersionSource,
    cache: Option<CacheStatus>,
    cdn: Option<&str>,
    origin: Option<&str>,
) -> (bool, String) {
    let label = source.label();
    let cache_s = cache.map_or("no cache status", CacheStatus::as_str);
    if cache == Some(CacheStatus::Miss) {
        return (true, "cache MISS: fetched from the origin".to_string());
    }
    match (cdn, origin) {
        (Some(c), Some(o)) => match compare(source, c, o) {
            Cmp::Same | Cmp::Newer => (true, format!("{cache_s}; {label} {c} is the origin's")),
            _ => (
                false,
                format!("{cache_s}; {label} {c} differs from the origin's {o}"),
            ),
        },
        (None, _) => (
            false,
            format!("{cache_s}; the CDN's response has no {label}"),
        ),
        (Some(c), None) => (
            false,
            format!("{cache_s}; {label} {c}, but the origin's version could not be read"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs<'a>(
        src: &'a VersionSource,
        origin: Option<&'a str>,
        cdns: &[(&'a str, Option<&'a str>)],
    ) -> Observation<'a> {
        Observation {
            canary: "https://www.example.com/app.css",
            path: "/app.css",
            source: src,
            origin,
            cdns: cdns.to_vec(),
        }
    }

    #[test]
    fn etags_are_equal_or_not_and_weak_marks_do_not_count() {
        let s = VersionSource::ETag;
        assert_eq!(compare(&s, "\"v1\"", "\"v1\""), Cmp::Same);
        assert_eq!(compare(&s, "W/\"v1\"", "\"v1\""), Cmp::Same);
        assert_eq!(compare(&s, "\"v1\"", "\"v2\""), Cmp::Differs);
    }

    #[test]
    fn last_modified_and_numbers_are_ordered() {
        let s = VersionSource::LastModified;
        let old = "Mon, 07 Dec 2026 10:00:00 GMT";
        let new = "Mon, 07 Dec 2026 11:00:00 GMT";
        assert_eq!(compare(&s, old, new), Cmp::Older);
        assert_eq!(compare(&s, new, old), Cmp::Newer);
        assert_eq!(compare(&s, new, new), Cmp::Same);
        let h = VersionSource::Header("x-version".into());
        assert_eq!(compare(&h, "9", "10"), Cmp::Older);
        assert_eq!(compare(&h, "abc", "abd"), Cmp::Differs);
    }

    #[test]
    fn the_highest_version_wins_even_over_the_origin() {
        let h = VersionSource::Header("x-version".into());
        assert_eq!(
            latest(&h, "3", [("cdn-a", "4"), ("cdn-b", "2")]),
            ("cdn-a", "4")
        );
        // The origin lags a CDN (a replica not yet updated): the CDN at 3 is behind cdn-a.
        let mut v = Versions::default();
        let o = obs(&h, Some("3"), &[("cdn-a", Some("4")), ("cdn-b", Some("3"))]);
        v.observe(&o, 0);
        let ch = v.evaluate(3_000, 5_000);
        assert_eq!(ch.len(), 0, "not behind for the grace yet: {ch:?}");
        v.observe(&o, 6_000);
        let ch = v.evaluate(6_000, 5_000);
        assert!(
            matches!(&ch[..], [Change::Stale { target, why, since_ms: 0 }]
                if target == "cdn-b" && why.contains("cdn-a")),
            "{ch:?}"
        );
        // ETags have no order: the origin's is the reference.
        let e = VersionSource::ETag;
        assert_eq!(
            latest(&e, "\"o\"", [("cdn-a", "\"z\"")]),
            ("origin", "\"o\"")
        );
    }

    #[test]
    fn stale_after_the_grace_and_fresh_again() {
        let s = VersionSource::ETag;
        let mut v = Versions::default();
        let grace = 60_000;
        v.observe(
            &obs(
                &s,
                Some("\"v2\""),
                &[("cdn-a", Some("\"v2\"")), ("cdn-b", Some("\"v1\""))],
            ),
            1_000,
        );
        assert!(v.evaluate(1_000, grace).is_empty());
        // Still behind 59 s later: within the grace.
        v.observe(
            &obs(&s, Some("\"v2\""), &[("cdn-b", Some("\"v1\""))]),
            60_000,
        );
        assert!(v.evaluate(60_000, grace).is_empty());
        assert!((v.behind_seconds(60_000)["cdn-b"] - 59.0).abs() < 1e-9);
        assert_eq!(v.behind_seconds(60_000)["cdn-a"], 0.0);
        // A failed fetch (None) keeps the state; the grace passes.
        v.observe(&obs(&s, Some("\"v2\""), &[("cdn-b", None)]), 61_000);
        let ch = v.evaluate(61_000, grace);
        assert_eq!(
            ch,
            vec![Change::Stale {
                target: "cdn-b".into(),
                why: "stale content: /app.css etag \"v1\" vs origin \"v2\"".into(),
                since_ms: 1_000
            }]
        );
        assert!(v.stale().contains_key("cdn-b"));
        // No repeat while it stays stale.
        assert!(v.evaluate(90_000, grace).is_empty());
        // Without the origin's version nothing changes.
        v.observe(&obs(&s, None, &[("cdn-b", Some("\"v2\""))]), 95_000);
        assert!(v.evaluate(95_000, grace).is_empty());
        // It serves the current version: fresh at once.
        v.observe(
            &obs(&s, Some("\"v2\""), &[("cdn-b", Some("\"v2\""))]),
            100_000,
        );
        assert_eq!(
            v.evaluate(100_000, grace),
            vec![Change::Fresh {
                target: "cdn-b".into()
            }]
        );
        assert!(v.stale().is_empty());
    }

    #[test]
    fn a_new_origin_version_restarts_the_clock_for_nobody_who_has_it() {
        let s = VersionSource::LastModified;
        let t1 = "Mon, 07 Dec 2026 10:00:00 GMT";
        let t2 = "Mon, 07 Dec 2026 11:00:00 GMT";
        let mut v = Versions::default();
        v.observe(&obs(&s, Some(t1), &[("cdn-a", Some(t1))]), 0);
        v.observe(&obs(&s, Some(t2), &[("cdn-a", Some(t1))]), 10_000);
        assert!(v.evaluate(15_000, 10_000).is_empty());
        let ch = v.evaluate(20_000, 10_000);
        assert!(
            matches!(
                &ch[..],
                [Change::Stale {
                    since_ms: 10_000,
                    ..
                }]
            ),
            "{ch:?}"
        );
    }

    #[test]
    fn verdicts() {
        let s = VersionSource::ETag;
        let (ok, why) = verdict(&s, Some(CacheStatus::Miss), Some("\"v1\""), Some("\"v2\""));
        assert!(ok, "{why}");
        let (ok, why) = verdict(&s, Some(CacheStatus::Hit), Some("\"v2\""), Some("\"v2\""));
        assert!(ok && why.contains("origin's"), "{why}");
        let (ok, why) = verdict(&s, Some(CacheStatus::Hit), Some("\"v1\""), Some("\"v2\""));
        assert!(
            !ok && why == "HIT; etag \"v1\" differs from the origin's \"v2\"",
            "{why}"
        );
        let (ok, why) = verdict(&s, None, None, Some("\"v2\""));
        assert!(!ok && why.contains("no etag"), "{why}");
    }
}
