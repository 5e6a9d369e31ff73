//! Cache level: what the CDN's response headers say about the canary object — HIT, MISS or STALE,
//! its age, and the PoP that answered.

use http::HeaderMap;

use crate::health::{CacheObservation, CacheStatus};

/// Headers naming the cache status, most specific first.
const STATUS_HEADERS: [&str; 7] = [
    "cf-cache-status", // Cloudflare: HIT, MISS, EXPIRED, STALE, BYPASS, DYNAMIC, REVALIDATED
    "x-cache",         // Fastly, CloudFront ("Hit from cloudfront"), Akamai, Varnish
    "x-cache-status",  // nginx, many others
    "cdn-cache",       // Bunny
    "akamai-cache-status", // Akamai
    "x-proxy-cache",   // nginx proxies
    "x-vercel-cache",  // Vercel
];

/// Headers naming the PoP/edge, with how to pull the PoP out of the value.
const POP_HEADERS: [&str; 6] = [
    "x-edge-location",
    "x-amz-cf-pop", // CloudFront: FRA56-P1
    "x-served-by",  // Fastly: cache-fra19120-FRA (a shield first, the edge last)
    "cdn-pullzone", // not a PoP; skipped below when numeric
    "cf-ray",       // Cloudflare: 7d1c2f...-FRA
    "x-cache-pop",
];

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Classify one status value. Fastly and others list several caches ("MISS, HIT"): the last one
/// is the edge that answered.
pub fn classify(value: &str) -> CacheStatus {
    let last = value.rsplit(',').next().unwrap_or(value).trim();
    let v = last.to_ascii_lowercase();
    if v.contains("stale") || v.contains("updating") {
        CacheStatus::Stale
    } else if v.contains("hit") {
        CacheStatus::Hit
    } else if v.contains("miss") || v.contains("expired") {
        CacheStatus::Miss
    } else {
        CacheStatus::Other
    }
}

fn pop_of(name: &str, value: &str) -> Option<String> {
    let last = value.rsplit(',').next().unwrap_or(value).trim();
    let pop = match name {
        "cf-ray" => last.rsplit('-').next()?.to_string(),
        "x-served-by" => last.to_string(),
        "cdn-pullzone" => return None,
        _ => last.to_string(),
    };
    (!pop.is_empty()).then_some(pop)
}

/// Read the cache facts of a response. Returns the observation (None when no header said
/// anything about caching) and a one-line detail.
pub fn read_cache_headers(h: &HeaderMap) -> (Option<CacheObservation>, String) {
    let age = header(h, "age").and_then(|a| a.parse::<u64>().ok());
    let status = STATUS_HEADERS
        .iter()
        .find_map(|n| header(h, n).map(|v| (*n, classify(v), v.to_string())));
    let pop = POP_HEADERS
        .iter()
        .find_map(|n| header(h, n).and_then(|v| pop_of(n, v)));
    let (status, source) = match status {
        Some((name, s, raw)) => (Some(s), format!("{name}: {raw}")),
        // No status header: a positive Age means the object came from a cache.
        None => match age {
            Some(a) if a > 0 => (Some(CacheStatus::Hit), format!("age {a} s")),
            Some(_) => (Some(CacheStatus::Miss), "age 0".to_string()),
            None => (None, String::new()),
        },
    };
    let Some(status) = status else {
        return (None, "no cache status header in the response".into());
    };
    let mut detail = format!("{} ({source})", status.as_str());
    if let Some(a) = age {
        detail.push_str(&format!("; age {a} s"));
    }
    if let Some(p) = &pop {
        detail.push_str(&format!("; pop {p}"));
    }
    (Some(CacheObservation { status, pop, age }), detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    /// The observation read from `pairs`, which must say something about caching.
    fn seen(pairs: &[(&str, &str)]) -> CacheObservation {
        read_cache_headers(&map(pairs))
            .0
            .expect("a cache observation")
    }

    #[test]
    fn vendors() {
        let o = seen(&[("CF-Cache-Status", "HIT"), ("CF-Ray", "8a1b2c3d4e-FRA")]);
        assert_eq!(
            (o.status, o.pop.as_deref()),
            (CacheStatus::Hit, Some("FRA"))
        );

        let o = seen(&[
            ("X-Cache", "MISS, HIT"),
            (
                "X-Served-By",
                "cache-iad-kiad7000025-IAD, cache-fra19120-FRA",
            ),
            ("Age", "120"),
        ]);
        assert_eq!(o.status, CacheStatus::Hit);
        assert_eq!(o.pop.as_deref(), Some("cache-fra19120-FRA"));
        assert_eq!(o.age, Some(120));

        let o = seen(&[
            ("X-Cache", "Miss from cloudfront"),
            ("X-Amz-Cf-Pop", "FRA56-P1"),
        ]);
        assert_eq!(
            (o.status, o.pop.as_deref()),
            (CacheStatus::Miss, Some("FRA56-P1"))
        );

        assert_eq!(
            seen(&[("X-Cache-Status", "STALE")]).status,
            CacheStatus::Stale
        );
        assert_eq!(
            seen(&[("cf-cache-status", "EXPIRED")]).status,
            CacheStatus::Miss
        );
        assert_eq!(
            seen(&[("cf-cache-status", "DYNAMIC")]).status,
            CacheStatus::Other
        );
    }

    #[test]
    fn age_alone_and_nothing() {
        assert_eq!(seen(&[("Age", "30")]).status, CacheStatus::Hit);
        assert_eq!(seen(&[("Age", "0")]).status, CacheStatus::Miss);
        let (o, d) = read_cache_headers(&map(&[("Server", "nginx")]));
        assert!(o.is_none());
        assert!(d.contains("no cache status"));
    }
}
