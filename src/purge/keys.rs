//! Surrogate keys in delivery: what one key item of a purge becomes on one CDN, and the
//! counting of the parts an item was expanded into.
//!
//! - A CDN that purges by key itself (Cloudflare, Fastly, Akamai, an `http` edge with `ban` or
//!   `purge`) gets the key and every registered key below it (`site:acme` → also
//!   `site:acme:blog`), so objects tagged only with a descendant go too.
//! - A CDN that cannot (CloudFront, an `http` edge with `key_method = "urls"`) gets the URLs
//!   the registry holds for the key and its descendants; a key with none fails there.
//!
//! Progress is kept per request item, so an item sent as several parts is confirmed on that
//! CDN when every part is, and failed as soon as one part fails for good ([`Parts`]). The
//! counts live in memory only: after a restart the open items are dispatched again, expanded
//! again and counted afresh (at least once: parts confirmed before the crash are sent again).
//! Each part of an item is queued once per dispatch, and the queue folds a second claim of the
//! same purge item on the same part into one, so a part confirms its item's count once.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::provider::{Item, Kind, Provider};
use super::queue::Ref;
use super::registry::Registry;
use super::{Change, kind_name};

/// What `item` is sent as on `pv`'s CDN: one or more items (the parts), or why it cannot be
/// purged there.
pub(crate) fn items_for(
    registry: &Registry,
    pv: &Provider,
    item: &Item,
) -> Result<Vec<Item>, String> {
    let provider = pv.config.provider.name();
    let Item::Key(key) = item else {
        return if pv.supports(item.kind()) {
            Ok(vec![item.clone()])
        } else {
            Err(format!("{provider} cannot purge by {}", kind_name(item)))
        };
    };
    let expansion = registry.expand(key);
    if pv.supports(Kind::Key) {
        let mut out = vec![item.clone()];
        match expansion {
            Ok(x) => out.extend(x.descendants.into_iter().map(Item::Key)),
            // The key itself still goes; the registry only adds to it.
            Err(e) => {
                tracing::warn!(target = %pv.target, "surrogate key {key:?} sent without its descendants: {e}")
            }
        }
        return Ok(out);
    }
    let x = expansion.map_err(|e| format!("surrogate key {key:?} not expanded: {e}"))?;
    if x.urls.is_empty() {
        return Err(format!(
            "no URLs registered for surrogate key {key:?} (nor below it): {provider} cannot purge \
             by key, so it purges the key's URLs from the registry (/v1/purges/keys)"
        ));
    }
    Ok(x.urls.into_iter().map(Item::Url).collect())
}

/// Parts still unconfirmed of items sent as several parts, by (target, purge id, item index).
#[derive(Default)]
pub(crate) struct Parts(Mutex<HashMap<(String, u64, u32), usize>>);

impl Parts {
    /// Item `idx` of purge `id` goes to `target` as `n` parts. A count already kept (the item
    /// dispatched again meanwhile) stays as it is.
    pub(crate) fn expect(&self, target: &str, id: u64, idx: u32, n: usize) {
        if n > 1 {
            self.0
                .lock()
                .entry((target.to_string(), id, idx))
                .or_insert(n);
        }
    }

    /// What change of one part does to its item: a confirmation confirms the item when it was
    /// the last part (else it only keeps the provider's id), a failure fails it at once; the
    /// rest passes. Items sent whole pass unchanged.
    pub(crate) fn count(&self, target: &str, r: &Ref, c: &Change) -> Option<Change> {
        let mut parts = self.0.lock();
        let k = (target.to_string(), r.id, r.idx);
        let Some(left) = parts.get_mut(&k) else {
            return Some(c.clone());
        };
        match c {
            Change::Confirmed(pid) => {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    parts.remove(&k);
                    Some(c.clone())
                } else {
                    pid.clone().map(Change::ProviderId)
                }
            }
            Change::Failed(_) => {
                parts.remove(&k);
                Some(c.clone())
            }
            _ => Some(c.clone()),
        }
    }

    #[cfg(test)]
    fn left(&self, target: &str, id: u64, idx: u32) -> Option<usize> {
        self.0.lock().get(&(target.to_string(), id, idx)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: u64, idx: u32) -> Ref {
        Ref {
            id,
            idx,
            accepted_ms: 0,
        }
    }

    fn confirmed(c: Option<Change>) -> bool {
        matches!(c, Some(Change::Confirmed(_)))
    }

    #[test]
    fn an_item_in_parts_is_confirmed_by_its_last_part() {
        let p = Parts::default();
        p.expect("cf", 1, 0, 3);
        // Dispatched again meanwhile: the count is not reset.
        p.expect("cf", 1, 0, 3);
        // One part: nothing to count.
        p.expect("cf", 1, 1, 1);
        assert!(matches!(
            p.count("cf", &r(1, 0), &Change::Sent),
            Some(Change::Sent)
        ));
        let c = p.count("cf", &r(1, 0), &Change::Confirmed(Some("I1".into())));
        assert!(
            matches!(c, Some(Change::ProviderId(ref id)) if id == "I1"),
            "{c:?}"
        );
        assert!(p.count("cf", &r(1, 0), &Change::Confirmed(None)).is_none());
        assert_eq!(p.left("cf", 1, 0), Some(1));
        // Another target's and another item's changes are their own.
        assert!(confirmed(p.count(
            "fastly",
            &r(1, 0),
            &Change::Confirmed(None)
        )));
        assert!(confirmed(p.count("cf", &r(1, 1), &Change::Confirmed(None))));
        assert!(confirmed(p.count("cf", &r(1, 0), &Change::Confirmed(None))));
        assert_eq!(p.left("cf", 1, 0), None);
    }

    fn provider(pc: crate::config::purge::ProviderConfig) -> Provider {
        use crate::config::purge::{PurgeTarget, RateLimit};
        let t = PurgeTarget {
            provider: pc,
            base_url: String::new(),
            rate: RateLimit {
                per_second: 1.0,
                burst: 1.0,
            },
            max_per_request: 100,
            timeout: std::time::Duration::from_secs(1),
            host: None,
            pricing: Vec::new(),
            purge_ratio_half: 100.0,
        };
        Provider::new("t", &t)
    }

    #[test]
    fn a_key_becomes_urls_or_keys_by_provider() {
        use crate::config::purge::{AwsCredentials, EdgeMethod, ProviderConfig, Secret};
        let dir = tempfile::tempdir().unwrap();
        let store =
            std::sync::Arc::new(super::super::store::Store::open(&dir.path().join("p")).unwrap());
        let reg = Registry::open(store, 100).unwrap();
        let a = "https://h/a".to_string();
        let b = "https://h/b".to_string();
        reg.set_key("site:acme", std::slice::from_ref(&a), true, 0)
            .unwrap();
        reg.set_key("site:acme:blog", &[a.clone(), b.clone()], true, 0)
            .unwrap();
        let cloudfront = provider(ProviderConfig::Cloudfront {
            distribution_id: "D".into(),
            credentials: AwsCredentials {
                access_key_id: Secret::new("k"),
                secret_access_key: Secret::new("s"),
                session_token: None,
            },
        });
        let fastly = provider(ProviderConfig::Fastly {
            service_id: "S".into(),
            token: Secret::new("t"),
        });
        let edge = |key_method| {
            provider(ProviderConfig::Http {
                edges: vec!["http://e".into()],
                key_method,
                key_header: "xkey".into(),
                token: None,
            })
        };
        let key = Item::Key("site:acme".into());
        let urls = vec![Item::Url(a.clone()), Item::Url(b.clone())];
        assert_eq!(items_for(&reg, &cloudfront, &key).unwrap(), urls);
        assert_eq!(
            items_for(&reg, &edge(EdgeMethod::Urls), &key).unwrap(),
            urls
        );
        let keys = vec![key.clone(), Item::Key("site:acme:blog".into())];
        assert_eq!(items_for(&reg, &fastly, &key).unwrap(), keys);
        assert_eq!(items_for(&reg, &edge(EdgeMethod::Ban), &key).unwrap(), keys);
        // A leaf key, an unknown key, other kinds.
        let leaf = Item::Key("site:acme:blog".into());
        assert_eq!(
            items_for(&reg, &fastly, &leaf).unwrap(),
            std::slice::from_ref(&leaf)
        );
        let e = items_for(&reg, &cloudfront, &Item::Key("site:acmex".into())).unwrap_err();
        assert!(
            e.starts_with("no URLs registered for surrogate key \"site:acmex\""),
            "{e}"
        );
        let e = items_for(&reg, &cloudfront, &Item::Host("h".into())).unwrap_err();
        assert_eq!(e, "cloudfront cannot purge by host");
        assert_eq!(
            items_for(&reg, &cloudfront, &urls[0]).unwrap(),
            [urls[0].clone()]
        );
    }

    #[test]
    fn one_part_failing_fails_the_item() {
        let p = Parts::default();
        p.expect("cf", 2, 4, 2);
        let retry = Change::Retrying("HTTP 503".into(), 9);
        assert!(matches!(
            p.count("cf", &r(2, 4), &retry),
            Some(Change::Retrying(..))
        ));
        assert!(p.count("cf", &r(2, 4), &Change::Confirmed(None)).is_none());
        let c = p.count("cf", &r(2, 4), &Change::Failed("HTTP 400".into()));
        assert!(matches!(c, Some(Change::Failed(ref e)) if e == "HTTP 400"));
        assert_eq!(p.left("cf", 2, 4), None);
    }
}
