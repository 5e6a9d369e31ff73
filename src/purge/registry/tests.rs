use super::*;

fn registry(max: usize) -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("p.redb")).unwrap());
    (dir, Registry::open(store, max).unwrap())
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

const A: &str = "https://www.example.com/a";
const B: &str = "https://www.example.com/b";
const C: &str = "https://www.example.com/c";

#[test]
fn hierarchy_is_on_colon_boundaries() {
    assert!(covers("site:acme", "site:acme"));
    assert!(covers("site:acme", "site:acme:blog"));
    assert!(covers("site:acme", "site:acme:blog:2024"));
    assert!(!covers("site:acme", "site:acmex"));
    assert!(!covers("site:acme", "site:acm"));
    assert!(!covers("site:acme:blog", "site:acme"));
}

#[test]
fn a_key_expands_to_its_urls_and_its_descendants() {
    let (_d, r) = registry(100);
    r.set_key("site:acme", &s(&[A]), true, 1).unwrap();
    r.set_key("site:acme:blog", &s(&[A, B]), true, 1).unwrap();
    r.set_key("site:acme:blog:2024", &s(&[C]), true, 1).unwrap();
    r.set_key("site:acmex", &s(&["https://x.example/"]), true, 1)
        .unwrap();
    r.set_key("site:acme;", &s(&["https://y.example/"]), true, 1)
        .unwrap();
    let x = r.expand("site:acme").unwrap();
    assert_eq!(x.urls, [A, B, C].map(String::from).into());
    assert_eq!(
        x.descendants,
        ["site:acme:blog", "site:acme:blog:2024"]
            .map(String::from)
            .into()
    );
    let x = r.expand("site:acme:blog").unwrap();
    assert_eq!(x.urls, [A, B, C].map(String::from).into());
    assert_eq!(r.expand("site").unwrap().urls.len(), 5, "all of `site:…`");
    assert_eq!(r.expand("site:acm").unwrap(), Expansion::default());
    assert_eq!(r.expand("nothing").unwrap(), Expansion::default());
    assert_eq!(r.urls("site:acme:blog").unwrap(), [A, B]);
    let d = r.descendant_urls("site:acme").unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d["site:acme:blog:2024"], [C]);
}

#[test]
fn put_replaces_post_adds_delete_removes() {
    let (_d, r) = registry(100);
    r.set_key("k", &s(&[A, B]), true, 1).unwrap();
    r.set_key("other", &s(&[A]), true, 1).unwrap();
    r.set_key("k", &s(&[B, C]), true, 2).unwrap();
    assert_eq!(r.urls("k").unwrap(), [B, C]);
    r.set_key("k", &s(&[A]), false, 3).unwrap();
    assert_eq!(r.urls("k").unwrap(), [A, B, C]);
    assert_eq!(r.len().unwrap(), 3);
    assert!(r.delete_key("k", 4).unwrap());
    assert!(!r.delete_key("k", 4).unwrap());
    assert!(r.urls("k").unwrap().is_empty());
    // A keeps its other key; B and C had only k.
    assert_eq!(r.urls("other").unwrap(), [A]);
    assert_eq!(r.len().unwrap(), 1);
}

#[test]
fn listing_by_prefix_with_counts_and_a_cursor() {
    let (_d, r) = registry(100);
    for (k, urls) in [
        ("product:1", vec![A, B]),
        ("product:1:reviews", vec![C]),
        ("product:2", vec![A]),
        ("site:acme", vec![A]),
    ] {
        r.set_key(k, &s(&urls), true, 1).unwrap();
    }
    let l = r.keys("product:", None, 10).unwrap();
    let got: Vec<(&str, usize)> = l.iter().map(|k| (k.key.as_str(), k.urls)).collect();
    assert_eq!(
        got,
        [("product:1", 2), ("product:1:reviews", 1), ("product:2", 1)]
    );
    let l = r.keys("product:", None, 1).unwrap();
    assert_eq!(l.len(), 1);
    let l = r.keys("product:", Some("product:1"), 10).unwrap();
    assert_eq!(l[0].key, "product:1:reviews");
    assert_eq!(r.keys("", None, 10).unwrap().len(), 4);
}

#[test]
fn the_registry_is_bounded_and_input_checked() {
    let (_d, r) = registry(2);
    r.set_key("k", &s(&[A, B]), true, 1).unwrap();
    let e = r.set_key("k2", &s(&[A, C]), true, 1).unwrap_err();
    assert!(
        matches!(e, RegistryError::Full { max: 2, ref url } if url == C),
        "{e}"
    );
    assert!(e.to_string().contains("purge.registry_max_urls"), "{e}");
    // Nothing of the refused change was kept.
    assert!(r.urls("k2").unwrap().is_empty());
    // Known URLs may get more keys.
    r.set_key("k2", &s(&[A]), true, 1).unwrap();
    let e = r.set_key("k", &s(&[A, "ftp://x/"]), true, 1).unwrap_err();
    assert_eq!(
        e.to_string(),
        "urls[1]: \"ftp://x/\" is not an absolute http(s) URL"
    );
    for bad in ["", "a b", ":a", "a:", "a,b"] {
        let e = r.set_key(bad, &s(&[A]), true, 1).unwrap_err();
        assert!(e.to_string().starts_with("key: "), "{bad:?}: {e}");
    }
}

#[test]
fn headers_give_the_keys() {
    let mut h = http::HeaderMap::new();
    assert_eq!(keys_from_headers(&h), None);
    h.append(
        "surrogate-key",
        "site:acme  site:acme:blog".parse().unwrap(),
    );
    h.append("surrogate-key", "product:1 site:acme".parse().unwrap());
    h.append(
        "cache-tag",
        "product:1, product:1:reviews ,,bad:".parse().unwrap(),
    );
    assert_eq!(
        keys_from_headers(&h).unwrap(),
        [
            "site:acme",
            "site:acme:blog",
            "product:1",
            "product:1:reviews"
        ]
    );
    let mut h = http::HeaderMap::new();
    h.insert("Cache-Tag", "".parse().unwrap());
    assert_eq!(keys_from_headers(&h), Some(vec![]));
    let mut h = http::HeaderMap::new();
    let many: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    h.insert("surrogate-key", many.join(" ").parse().unwrap());
    assert_eq!(keys_from_headers(&h).unwrap().len(), MAX_KEYS_PER_URL);
}

#[test]
fn learning_replaces_a_urls_keys() {
    let (_d, r) = registry(100);
    let mut h = http::HeaderMap::new();
    h.insert("surrogate-key", "site:acme site:acme:blog".parse().unwrap());
    assert_eq!(
        r.learn(A, &h, 5).unwrap().unwrap(),
        ["site:acme", "site:acme:blog"]
    );
    r.set_key("site:acme", &s(&[B]), false, 6).unwrap();
    assert_eq!(r.urls("site:acme").unwrap(), [A, B]);
    // A's answer now names other keys: it leaves the old ones.
    let mut h = http::HeaderMap::new();
    h.insert("cache-tag", "product:1,site:acme".parse().unwrap());
    r.learn(A, &h, 7).unwrap();
    assert_eq!(r.urls("site:acme").unwrap(), [A, B]);
    assert!(r.urls("site:acme:blog").unwrap().is_empty());
    assert_eq!(r.urls("product:1").unwrap(), [A]);
    // No header at all: nothing known, nothing changed.
    assert_eq!(r.learn(A, &http::HeaderMap::new(), 8).unwrap(), None);
    assert_eq!(r.urls("product:1").unwrap(), [A]);
    // An empty header: the URL has no keys any more.
    let mut h = http::HeaderMap::new();
    h.insert("surrogate-key", "".parse().unwrap());
    assert_eq!(r.learn(A, &h, 9).unwrap(), Some(vec![]));
    assert_eq!(r.urls("site:acme").unwrap(), [B]);
    assert_eq!(r.len().unwrap(), 1);
    assert!(r.learn("not a url", &h, 9).is_err());
}
