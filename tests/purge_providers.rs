//! The five purge API clients against their stand-ins (`common/cdn_apis.rs`): request shapes,
//! credentials, rate limiting, server errors, partial failures, timeouts, CloudFront's
//! pending invalidations, and credentials kept out of every failure and debug output.

#[path = "common/cdn_apis.rs"]
mod cdn_apis;

use std::time::{Duration, Instant};

use cdn_apis::*;
use steerd::config::purge::{EdgeMethod, ProviderConfig, PurgeTarget};
use steerd::purge::provider::{Batch, Failure, Item, ItemResult, Kind, PollResult, Provider};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn url(s: &str) -> Item {
    Item::Url(s.to_string())
}

fn key(s: &str) -> Item {
    Item::Key(s.to_string())
}

fn batch(items: Vec<Item>) -> Batch {
    Batch { items, soft: false }
}

fn soft(items: Vec<Item>) -> Batch {
    Batch { items, soft: true }
}

async fn send(t: &PurgeTarget, b: &Batch) -> Vec<ItemResult> {
    let p = Provider::new("cdn-a", t);
    let r = p.send(&client(), b).await;
    assert_eq!(r.len(), b.items.len(), "one result per item");
    r
}

/// The provider id of a confirmed result (empty without one).
fn confirmed(r: &ItemResult) -> String {
    match r {
        ItemResult::Confirmed { provider_id } => provider_id.clone().unwrap_or_default(),
        other => panic!("not confirmed: {other:?}"),
    }
}

fn failure(r: &ItemResult) -> &Failure {
    match r {
        ItemResult::Failed(f) => f,
        other => panic!("not failed: {other:?}"),
    }
}

/// No test credential in `text`.
fn no_secret(text: &str) {
    for s in secrets() {
        assert!(!text.contains(s), "{s:?} leaked into {text:?}");
    }
}

// --- Cloudflare ------------------------------------------------------------------------------

#[tokio::test]
async fn cloudflare_request_shapes() {
    let api = CdnApi::start(ProviderKind::Cloudflare);
    let t = api.target();
    let r = send(
        &t,
        &batch(vec![url("https://w.example/a"), url("https://w.example/b")]),
    )
    .await;
    assert_eq!(confirmed(&r[0]), "cf-purge-1");
    assert_eq!(confirmed(&r[1]), "cf-purge-1");
    confirmed(&send(&t, &batch(vec![key("blog"), key("shop")])).await[0]);
    let prefix = Item::Prefix("https://w.example/blog/".into());
    confirmed(&send(&t, &batch(vec![prefix])).await[0]);
    confirmed(&send(&t, &batch(vec![Item::Host("w.example".into())])).await[0]);
    confirmed(&send(&t, &batch(vec![Item::Everything])).await[0]);
    let kinds: Vec<String> = api.requests().iter().map(|r| r.kind.clone()).collect();
    assert_eq!(kinds, ["files", "tags", "prefixes", "hosts", "everything"]);
    assert_eq!(
        api.purged(),
        [
            "https://w.example/a",
            "https://w.example/b",
            "blog",
            "shop",
            "w.example/blog/",
            "w.example",
            "everything"
        ]
    );
    let first = &api.requests()[0];
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.path, format!("/zones/{CF_ZONE}/purge_cache"));
}

#[tokio::test]
async fn cloudflare_wrong_token_is_refused_for_good() {
    let api = CdnApi::start(ProviderKind::Cloudflare);
    let t = wrong_credentials(&api.target());
    let r = send(&t, &batch(vec![url("https://w.example/a")])).await;
    let f = failure(&r[0]);
    assert!(!f.retryable, "{f:?}");
    assert!(f.error.starts_with("HTTP 403"), "{}", f.error);
    // The stand-in echoes the token it got: the failure must not.
    assert!(f.error.contains("<secret>"), "{}", f.error);
    no_secret(&f.error);
    assert!(api.requests().is_empty());
}

#[tokio::test]
async fn cloudflare_rate_limit_and_server_errors() {
    let api = CdnApi::start(ProviderKind::Cloudflare);
    let t = api.target();
    api.fail_next(429, 1, Some(7));
    let f = failure(&send(&t, &batch(vec![key("a")])).await[0]).clone();
    assert!(f.retryable);
    assert_eq!(f.retry_after, Some(Duration::from_secs(7)));
    assert!(f.error.contains("429"), "{}", f.error);
    api.fail_next(502, 1, None);
    let f = failure(&send(&t, &batch(vec![key("a")])).await[0]).clone();
    assert!(f.retryable && f.retry_after.is_none(), "{f:?}");
    api.set_down(true);
    assert!(failure(&send(&t, &batch(vec![key("a")])).await[0]).retryable);
    api.set_down(false);
    confirmed(&send(&t, &batch(vec![key("a")])).await[0]);
    assert_eq!(api.calls(), 4);
    assert_eq!(api.purged(), ["a"]);
}

#[tokio::test]
async fn cloudflare_refuses_a_request_whole() {
    let api = CdnApi::start(ProviderKind::Cloudflare);
    let t = api.target();
    api.fail_items(&["bad"]);
    let r = send(&t, &batch(vec![key("good"), key("bad")])).await;
    for x in &r {
        let f = failure(x);
        assert!(!f.retryable);
        assert!(f.error.contains("stand-in refused bad"), "{}", f.error);
    }
    // `success: false` in a 200 is a failure too.
    api.fail_next(200, 1, None);
    let f = failure(&send(&t, &batch(vec![key("good")])).await[0]).clone();
    assert!(f.error.starts_with("HTTP 200"), "{}", f.error);
    assert!(!f.retryable);
}

// --- Fastly ----------------------------------------------------------------------------------

#[tokio::test]
async fn fastly_urls_keys_everything_and_soft() {
    let api = CdnApi::start(ProviderKind::Fastly);
    let t = api.target();
    let p = Provider::new("cdn-f", &t);
    assert_eq!(p.max_per_request(Kind::Url), 1);
    assert_eq!(p.max_per_request(Kind::Key), 256);
    assert!(!p.supports(Kind::Prefix));
    let r = send(&t, &batch(vec![url("https://www.example.com/a.css?v=2")])).await;
    assert_eq!(confirmed(&r[0]), "fastly-1");
    let r = send(&t, &soft(vec![url("http://www.example.com/b")])).await;
    confirmed(&r[0]);
    let r = send(&t, &soft(vec![key("k1"), key("k2"), key("k3")])).await;
    let ids: Vec<String> = r.iter().map(confirmed).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| i.starts_with("fastly-")));
    confirmed(&send(&t, &soft(vec![Item::Everything])).await[0]);
    let reqs = api.requests();
    let shapes: Vec<(String, bool)> = reqs.iter().map(|r| (r.kind.clone(), r.soft)).collect();
    assert_eq!(
        shapes,
        [
            ("url".to_string(), false),
            ("url".to_string(), true),
            ("keys".to_string(), true),
            // Fastly has no soft purge-all: the header is not sent.
            ("everything".to_string(), false),
        ]
    );
    assert_eq!(reqs[0].path, "/purge/www.example.com/a.css?v=2");
    assert_eq!(reqs[2].path, format!("/service/{FASTLY_SERVICE}/purge"));
    assert_eq!(reqs[3].path, format!("/service/{FASTLY_SERVICE}/purge_all"));
    assert_eq!(
        api.purged(),
        [
            "www.example.com/a.css?v=2",
            "www.example.com/b",
            "k1",
            "k2",
            "k3",
            "everything"
        ]
    );
    let r = send(&t, &batch(vec![Item::Prefix("www.example.com/x".into())])).await;
    assert!(!failure(&r[0]).retryable);
}

#[tokio::test]
async fn fastly_partial_failure_wrong_key_and_throttling() {
    let api = CdnApi::start(ProviderKind::Fastly);
    let t = api.target();
    api.fail_items(&["k2"]);
    let r = send(&t, &batch(vec![key("k1"), key("k2"), key("k3")])).await;
    confirmed(&r[0]);
    assert!(failure(&r[1]).error.contains("k2"));
    assert!(failure(&r[1]).retryable);
    confirmed(&r[2]);
    assert_eq!(api.purged(), ["k1", "k3"]);

    let r = send(&wrong_credentials(&t), &batch(vec![key("k1")])).await;
    let f = failure(&r[0]);
    assert!(!f.retryable && f.error.starts_with("HTTP 401"), "{f:?}");
    no_secret(&f.error);

    api.fail_next(429, 2, Some(3));
    for _ in 0..2 {
        let f = failure(&send(&t, &batch(vec![url("https://h/x")])).await[0]).clone();
        assert_eq!(f.retry_after, Some(Duration::from_secs(3)));
    }
    api.fail_next(503, 1, None);
    assert!(failure(&send(&t, &batch(vec![key("k1")])).await[0]).retryable);
    confirmed(&send(&t, &batch(vec![url("https://h/x")])).await[0]);
}

// --- Akamai ----------------------------------------------------------------------------------

#[tokio::test]
async fn akamai_signed_requests_per_kind_and_network() {
    let api = CdnApi::start(ProviderKind::Akamai);
    let t = api.target();
    let r = send(
        &t,
        &batch(vec![url("https://w.example/a"), url("https://w.example/b")]),
    )
    .await;
    assert_eq!(confirmed(&r[0]), "akamai-purge-1");
    assert_eq!(confirmed(&r[1]), "akamai-purge-1");
    confirmed(&send(&t, &soft(vec![key("blog")])).await[0]);
    confirmed(&send(&t, &batch(vec![Item::Everything])).await[0]);
    let mut staging = t.clone();
    if let ProviderConfig::Akamai { network, .. } = &mut staging.provider {
        *network = steerd::config::purge::AkamaiNetwork::Staging;
    }
    confirmed(&send(&staging, &soft(vec![url("https://w.example/c")])).await[0]);
    let paths: Vec<String> = api.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/ccu/v3/delete/url/production",
            "/ccu/v3/invalidate/tag/production",
            "/ccu/v3/delete/cpcode/production",
            "/ccu/v3/invalidate/url/staging",
        ]
    );
    assert_eq!(
        api.purged(),
        [
            "https://w.example/a",
            "https://w.example/b",
            "blog",
            "12345",
            "67890",
            "https://w.example/c"
        ]
    );
    let auth = api.requests()[0]
        .header("authorization")
        .unwrap()
        .to_string();
    assert!(auth.starts_with("EG1-HMAC-SHA256 client_token="), "{auth}");
    assert_eq!(
        Provider::new("a", &t).cost(&batch(vec![key("a"), key("b")])),
        2.0
    );
}

#[tokio::test]
async fn akamai_wrong_secret_fails_the_signature() {
    let api = CdnApi::start(ProviderKind::Akamai);
    let r = send(&wrong_credentials(&api.target()), &batch(vec![key("a")])).await;
    let f = failure(&r[0]);
    assert!(!f.retryable);
    assert!(
        f.error.contains("The signature does not match"),
        "{}",
        f.error
    );
    no_secret(&f.error);
    assert!(api.requests().is_empty());
    assert_eq!(api.calls(), 1);
}

#[tokio::test]
async fn akamai_splits_bodies_over_50000_bytes() {
    let api = CdnApi::start(ProviderKind::Akamai);
    let t = api.target();
    let long = "x".repeat(180);
    let items: Vec<Item> = (0..500)
        .map(|i| url(&format!("https://w.example/{long}/{i}")))
        .collect();
    let r = send(&t, &batch(items.clone())).await;
    assert!(r.iter().all(|x| confirmed(x).starts_with("akamai-purge-")));
    let reqs = api.requests();
    assert!(reqs.len() >= 2, "{} requests", reqs.len());
    assert!(reqs.iter().all(|r| r.body.len() <= 50_000));
    let want: Vec<String> = items
        .iter()
        .map(|i| match i {
            Item::Url(u) => u.clone(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(api.purged(), want, "every item once, in order");
}

#[tokio::test]
async fn akamai_partial_failure_and_throttling() {
    let api = CdnApi::start(ProviderKind::Akamai);
    let t = api.target();
    api.fail_items(&["tag-x"]);
    let r = send(&t, &batch(vec![key("tag-x"), key("tag-y")])).await;
    for x in &r {
        let f = failure(x);
        assert!(!f.retryable && f.error.contains("Forbidden"), "{f:?}");
    }
    api.fail_next(429, 1, Some(5));
    let f = failure(&send(&t, &batch(vec![key("tag-y")])).await[0]).clone();
    assert!(f.retryable);
    assert_eq!(f.retry_after, Some(Duration::from_secs(5)));
    api.fail_next(507, 1, None);
    assert!(failure(&send(&t, &batch(vec![key("tag-y")])).await[0]).retryable);
    confirmed(&send(&t, &batch(vec![key("tag-y")])).await[0]);
    assert_eq!(api.purged(), ["tag-y"]);
}

// --- CloudFront ------------------------------------------------------------------------------

#[tokio::test]
async fn cloudfront_pending_until_polled_completed() {
    let api = CdnApi::start(ProviderKind::Cloudfront);
    api.set_in_progress_polls(2);
    let t = api.target();
    let p = Provider::new("cdn-c", &t);
    let items = vec![url("https://w.example/a?x=1"), url("https://w.example/b&c")];
    let r = p.send(&client(), &batch(items)).await;
    let id = match &r[0] {
        ItemResult::Pending { provider_id } => provider_id.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(r[1], r[0]);
    assert_eq!(api.purged(), ["/a?x=1", "/b&c"]);
    assert_eq!(p.poll(&client(), &id).await, PollResult::InProgress);
    assert_eq!(p.poll(&client(), &id).await, PollResult::InProgress);
    assert_eq!(p.poll(&client(), &id).await, PollResult::Completed);
    assert_eq!(api.polls(), 3);
    match p.poll(&client(), "NOSUCH").await {
        PollResult::Failed(f) => assert!(!f.retryable && f.error.contains("NoSuchInvalidation")),
        other => panic!("{other:?}"),
    }
    let body = &api.requests()[0].body;
    assert!(body.contains("<Quantity>2</Quantity>"), "{body}");
    assert!(body.contains("<Path>/b&amp;c</Path>"), "{body}");
}

#[tokio::test]
async fn cloudfront_wildcards_everything_and_completed_answers() {
    let api = CdnApi::start(ProviderKind::Cloudfront);
    let t = api.target();
    let p = Provider::new("cdn-c", &t);
    assert_eq!(p.max_per_request(Kind::Prefix), 15);
    assert_eq!(p.max_per_request(Kind::Url), 3000);
    assert!(!p.supports(Kind::Key));
    let r = send(&t, &batch(vec![Item::Prefix("w.example/blog/".into())])).await;
    assert!(matches!(r[0], ItemResult::Pending { .. }), "{r:?}");
    api.set_completed_on_create(true);
    let r = send(&t, &batch(vec![Item::Everything])).await;
    assert!(confirmed(&r[0]).starts_with("I2J0STANDIN"));
    assert_eq!(api.purged(), ["/blog/*", "/*"]);
    // Two requests, two caller references: the stand-in refuses a reused one.
    assert_eq!(api.requests().len(), 2);
}

#[tokio::test]
async fn cloudfront_signature_credentials_and_limits() {
    let api = CdnApi::start(ProviderKind::Cloudfront);
    let t = api.target();
    let r = send(
        &wrong_credentials(&t),
        &batch(vec![url("https://w.example/a")]),
    )
    .await;
    let f = failure(&r[0]);
    assert!(
        !f.retryable && f.error.contains("SignatureDoesNotMatch"),
        "{f:?}"
    );
    no_secret(&f.error);

    let mut with_session = t.clone();
    if let ProviderConfig::Cloudfront { credentials, .. } = &mut with_session.provider {
        credentials.session_token = Some(steerd::config::purge::Secret::new("sess-tok"));
    }
    let r = send(&with_session, &batch(vec![url("https://w.example/a")])).await;
    assert!(matches!(r[0], ItemResult::Pending { .. }), "{r:?}");
    let sent = &api.requests()[0];
    assert_eq!(sent.header("x-amz-security-token"), Some("sess-tok"));
    assert!(
        sent.header("authorization")
            .unwrap()
            .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token")
    );

    // TooManyInvalidationsInProgress is a 400 that passes with time.
    api.fail_next(400, 1, None);
    let f = failure(&send(&t, &batch(vec![url("https://w.example/a")])).await[0]).clone();
    assert!(
        f.retryable && f.error.contains("TooManyInvalidationsInProgress"),
        "{f:?}"
    );
    api.fail_next(429, 1, Some(2));
    let f = failure(&send(&t, &batch(vec![url("https://w.example/a")])).await[0]).clone();
    assert_eq!(f.retry_after, Some(Duration::from_secs(2)));
    api.fail_next(503, 1, None);
    assert!(failure(&send(&t, &batch(vec![url("https://w.example/a")])).await[0]).retryable);
    api.fail_items(&["/bad"]);
    let r = send(&t, &batch(vec![url("https://w.example/bad")])).await;
    assert!(!failure(&r[0]).retryable);
}

// --- Self-run edges --------------------------------------------------------------------------

#[tokio::test]
async fn edges_get_every_item() {
    let edges = CdnApi::start_edges(2);
    let mut t = http_target(&edges);
    let r = send(&t, &batch(vec![url("https://www.example.com/a.css?v=1")])).await;
    assert_eq!(confirmed(&r[0]), "");
    confirmed(&send(&t, &batch(vec![key("blog")])).await[0]);
    let prefix = Item::Prefix("www.example.com/blog/".into());
    confirmed(&send(&t, &batch(vec![prefix])).await[0]);
    t.host = Some("origin.example".into());
    if let ProviderConfig::Http { key_method, .. } = &mut t.provider {
        *key_method = EdgeMethod::Purge;
    }
    confirmed(&send(&t, &batch(vec![url("/rel")])).await[0]);
    confirmed(&send(&t, &batch(vec![key("shop")])).await[0]);
    for e in &edges {
        let shapes: Vec<(String, String)> = e
            .requests()
            .iter()
            .map(|r| (r.method.clone(), r.kind.clone()))
            .collect();
        let want = [
            ("PURGE", "url"),
            ("BAN", "key"),
            ("BAN", "prefix"),
            ("PURGE", "url"),
            ("PURGE", "key"),
        ];
        assert_eq!(shapes, want.map(|(a, b)| (a.to_string(), b.to_string())));
        assert_eq!(
            e.purged(),
            [
                "www.example.com/a.css?v=1",
                "blog",
                "www.example.com/blog/",
                "origin.example/rel",
                "shop"
            ]
        );
        assert_eq!(e.requests()[4].header("host"), Some("origin.example"));
    }
}

#[tokio::test]
async fn edges_one_failing_fails_the_item_naming_it() {
    let edges = CdnApi::start_edges(2);
    let t = http_target(&edges);
    edges[1].fail_next(500, 1, None);
    let r = send(&t, &batch(vec![url("https://h.example/a")])).await;
    let f = failure(&r[0]);
    assert!(f.retryable);
    assert!(f.error.contains(&edges[1].base_url()), "{}", f.error);
    assert!(!f.error.contains(&edges[0].base_url()), "{}", f.error);
    assert_eq!(edges[0].purged(), ["h.example/a"]);

    edges[0].fail_items(&["h.example/b"]);
    let r = send(&t, &batch(vec![url("https://h.example/b")])).await;
    assert!(failure(&r[0]).error.contains(&edges[0].base_url()));

    let r = send(
        &wrong_credentials(&t),
        &batch(vec![url("https://h.example/c")]),
    )
    .await;
    let f = failure(&r[0]);
    assert!(!f.retryable && f.error.contains("401"), "{f:?}");
    no_secret(&f.error);
    assert!(!send(&t, &batch(vec![Item::Everything])).await.is_empty());
}

// --- Every provider --------------------------------------------------------------------------

fn every_kind() -> Vec<(CdnApi, Item)> {
    vec![
        (CdnApi::start(ProviderKind::Cloudflare), key("a")),
        (CdnApi::start(ProviderKind::Fastly), key("a")),
        (CdnApi::start(ProviderKind::Akamai), key("a")),
        (CdnApi::start(ProviderKind::Cloudfront), url("https://h/a")),
        (CdnApi::start(ProviderKind::Http), url("https://h/a")),
    ]
}

#[tokio::test]
async fn slow_answers_time_out_retryably() {
    for (api, item) in every_kind() {
        api.set_delay(Duration::from_secs(3));
        let mut t = api.target();
        t.timeout = Duration::from_millis(200);
        let start = Instant::now();
        let r = send(&t, &batch(vec![item])).await;
        let f = failure(&r[0]);
        assert!(f.retryable, "{:?}: {f:?}", api.kind);
        assert!(f.error.contains("timed out"), "{:?}: {}", api.kind, f.error);
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", api.kind);
    }
}

#[tokio::test]
async fn nothing_listening_is_retryable() {
    for (api, item) in every_kind() {
        let t = api.target();
        drop(api);
        let r = send(&t, &batch(vec![item])).await;
        assert!(failure(&r[0]).retryable, "{r:?}");
    }
}

#[tokio::test]
async fn credentials_never_printed() {
    for (api, item) in every_kind() {
        for t in [api.target(), wrong_credentials(&api.target())] {
            let p = Provider::new("cdn", &t);
            no_secret(&format!("{p:?}"));
            let r = p.send(&client(), &batch(vec![item.clone()])).await;
            no_secret(&format!("{r:?}"));
            api.fail_next(500, 1, None);
            no_secret(&format!(
                "{:?}",
                p.send(&client(), &batch(vec![item.clone()])).await
            ));
        }
    }
}
