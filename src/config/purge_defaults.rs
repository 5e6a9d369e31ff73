//! Each purge provider's documented defaults: its public API, its rate limit and the most
//! items it takes in one request. `[targets.purge]` may lower `max_per_request` and set
//! `rate`; these are what a target gets otherwise (sources in docs/config.md).

use super::purge::RateLimit;

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
        "cloudflare" => d("https://api.cloudflare.com/client/v4", 5.0, 25.0, 30),
        "fastly" => d("https://api.fastly.com", 10.0, 50.0, 256),
        "akamai" => d("https://akab-host.purge.akamaiapis.net", 5.0, 25.0, 500),
        "cloudfront" => d("https://cloudfront.amazonaws.com", 1.0, 5.0, 3000),
        "http" => d("", 100.0, 200.0, 1),
        _ => return None,
    })
}
