//! Each purge provider's documented defaults: its public API, its rate limit and the most
//! items it takes in one request. `[targets.purge]` may lower `max_per_request` and set
//! `rate`; these are what a target gets otherwise (sources in docs/config.md).

use super::purge::{PriceTier, RateLimit};

/// One provider's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProviderDefaults {
    pub base_url: &'static str,
    pub rate: RateLimit,
    /// Items in one request, at most.
    pub max_per_request: usize,
}

/// The defaults of `provider` ("cloudflare", "fastly", "akamai", "cloudfront", "http"); None
/// for a name that is no provider.
pub fn for_provider(provider: &str) -> Option<ProviderDefaults> {
    let d = |base_url, per_second, burst, max_per_request| ProviderDefaults {
        base_url,
        rate: RateLimit { per_second, burst },
        max_per_request,
    };
    Some(match provider {
        // developers.cloudflare.com/cache/how-to/purge-cache/ (purge limits): Pro 5 requests/s,
        // bucket 25 (Free 5/minute, Business 10/s and 50, Enterprise 50/s and 500); 100
        // operations per request on every plan.
        "cloudflare" => d("https://api.cloudflare.com/client/v4", 5.0, 25.0, 100),
        // docs.fastly.com/api (rate limiting): URL and surrogate-key purges are not limited
        // (purge-all counts against 1,000 writes an hour); 200/s is our own ceiling, about what
        // a worker's 8 requests in flight reach at Fastly's ~40 ms (one URL per request, so a
        // 100,000-URL purge takes ~8 min: use keys). 256 keys per batch purge (API reference,
        // "Purge multiple surrogate key tags").
        "fastly" => d("https://api.fastly.com", 200.0, 400.0, 256),
        // techdocs.akamai.com/purge-cache/reference/rate-limiting: tokens are objects; URL
        // objects refill 12,000/min (200/s) into a bucket of 10,000 (cache tags 500/min and
        // 5,000, CP codes 30/min and 300: beyond them Akamai answers 429). Bodies ≤ 50,000
        // bytes; the 500 objects per request are our own cap.
        "akamai" => d(
            // No default host: each EdgeGrid credential names its own (validation requires
            // `base_url`).
            "", 200.0, 10_000.0, 500,
        ),
        // docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/InvalidationLimits.html:
        // 3,000 file paths (15 wildcards) in progress per distribution, so one request may
        // carry 3,000; AWS publishes no request rate: 1/s is our own.
        "cloudfront" => d("https://cloudfront.amazonaws.com", 1.0, 5.0, 3000),
        // Self-run edges: no provider limit; one item per request to every edge.
        "http" => d("", 100.0, 200.0, 1),
        _ => return None,
    })
}

/// Objects purged in 5 minutes that make a target's `recent_purge_ratio` 0.5, unless
/// `purge_ratio_half` says otherwise (see `purge::recent`).
pub const PURGE_RATIO_HALF: f64 = 100.0;

/// What `provider` charges for purges, per billed item and calendar month, when
/// `[targets.purge] pricing` does not say (empty for a name that is no provider). What an item
/// is, is what the provider bills: CloudFront invalidation paths, Akamai objects, the items of
/// every other provider's requests.
pub fn pricing(provider: &str) -> Vec<PriceTier> {
    let free = vec![PriceTier {
        up_to: None,
        per_item: 0.0,
    }];
    match provider {
        // aws.amazon.com/cloudfront/pricing/ ("Invalidation requests"): the first 1,000 paths
        // a month are free, then $0.005 per path; a wildcard path (`/images/*`) counts as one
        // path. The free 1,000 are per AWS account: several distributions of one account share
        // them (set `pricing` on each accordingly).
        "cloudfront" => vec![
            PriceTier {
                up_to: Some(1000),
                per_item: 0.0,
            },
            PriceTier {
                up_to: None,
                per_item: 0.005,
            },
        ],
        // developers.cloudflare.com/cache/how-to/purge-cache/: purging is included in every
        // plan (the limits are rate limits, not charges).
        // docs.fastly.com/en/guides/purging-api-cache-with-surrogate-keys: purges are free, on
        // every account.
        // techdocs.akamai.com/purge-cache: Fast Purge is part of the contract, not billed per
        // object (set `pricing` if yours says otherwise).
        // `http`: self-run edges cost nothing per purge.
        "cloudflare" | "fastly" | "akamai" | "http" => free,
        _ => Vec::new(),
    }
}
