//! CloudFront invalidations: `POST {base_url}/2020-05-31/distribution/{id}/invalidation` with
//! an `InvalidationBatch` (XML), signed with AWS Signature Version 4 (service `cloudfront`,
//! region `us-east-1`). CloudFront answers 201 with the invalidation `InProgress`: its items
//! are [`ItemResult::Pending`] on its `Id` until [`poll`] (`GET …/invalidation/{id}`) finds it
//! `Completed`.
//!
//! URLs become their path and query, prefixes `path*` wildcards, `everything` is `/*`.
//! CloudFront allows 3,000 file paths and 15 wildcard paths in progress per distribution: a
//! request carries at most that many (`MAX_PATHS_PER_REQUEST`, `MAX_WILDCARDS_PER_REQUEST`),
//! and beyond them CloudFront answers `TooManyInvalidationsInProgress`, a retryable failure
//! (the worker backs off until earlier invalidations complete).

use hmac::{Hmac, KeyInit, Mac};
use quick_xml::events::Event;
use sha2::{Digest, Sha256};

use super::{Batch, Item, ItemResult, Kind, PollResult, Results};
use crate::config::purge::{AwsCredentials, PurgeTarget};

/// File paths in one invalidation: all of CloudFront's 3,000 in progress at once.
pub const MAX_PATHS_PER_REQUEST: usize = 3000;

/// Wildcard paths in one invalidation: CloudFront's 15 in progress at once.
pub const MAX_WILDCARDS_PER_REQUEST: usize = 15;

const REGION: &str = "us-east-1";
const SERVICE: &str = "cloudfront";
const API: &str = "2020-05-31";

/// Error codes CloudFront answers with 400 that pass with time.
const RETRYABLE_CODES: [&str; 4] = [
    "TooManyInvalidationsInProgress",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
];

pub async fn send(
    http: &reqwest::Client,
    c: &PurgeTarget,
    distribution_id: &str,
    creds: &AwsCredentials,
    batch: &Batch,
) -> Vec<ItemResult> {
    let mut out = Results::new(batch.items.len());
    for (kind, idx) in super::by_kind(batch) {
        let max = match kind {
            Kind::Url => MAX_PATHS_PER_REQUEST,
            Kind::Prefix => MAX_WILDCARDS_PER_REQUEST,
            Kind::Everything => 1,
            Kind::Key | Kind::Host => {
                out.set_all(&idx, &super::unsupported("cloudfront", kind));
                continue;
            }
        };
        for chunk in idx.chunks(max) {
            let paths: Vec<String> = chunk.iter().map(|&i| path(&batch.items[i])).collect();
            let r = invalidate(http, c, distribution_id, creds, &paths).await;
            out.set_all(chunk, &r);
        }
    }
    out.done()
}

/// The invalidation path of an item: a URL's path and query, a prefix's path with `*`.
pub fn path(item: &Item) -> String {
    match item {
        Item::Url(u) => match reqwest::Url::parse(u) {
            Ok(url) => match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            },
            Err(_) => slash(u),
        },
        Item::Prefix(p) => {
            let p = p
                .strip_prefix("https://")
                .or_else(|| p.strip_prefix("http://"))
                .unwrap_or(p);
            // Cloudflare's form (`host/path`): the path starts at the first slash.
            let path = if p.starts_with('/') {
                p
            } else {
                p.find('/').map_or("/", |i| &p[i..])
            };
            format!("{}*", path.trim_end_matches('*'))
        }
        Item::Everything => "/*".to_string(),
        Item::Key(k) | Item::Host(k) => slash(k),
    }
}

fn slash(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// The `InvalidationBatch` document for `paths`.
pub fn batch_xml(paths: &[String], caller_reference: &str) -> String {
    let mut items = String::new();
    for p in paths {
        items.push_str("<Path>");
        items.push_str(&quick_xml::escape::escape(p.as_str()));
        items.push_str("</Path>");
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <InvalidationBatch xmlns=\"http://cloudfront.amazonaws.com/doc/{API}/\">\
         <Paths><Quantity>{}</Quantity><Items>{items}</Items></Paths>\
         <CallerReference>{}</CallerReference></InvalidationBatch>",
        paths.len(),
        quick_xml::escape::escape(caller_reference)
    )
}

/// A reference unique to this request (CloudFront refuses a reused one with other paths).
fn caller_reference() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("steerd-{nanos}-{:016x}", rand::random::<u64>())
}

async fn invalidate(
    http: &reqwest::Client,
    c: &PurgeTarget,
    distribution_id: &str,
    creds: &AwsCredentials,
    paths: &[String],
) -> ItemResult {
    let url = format!(
        "{}/{API}/distribution/{distribution_id}/invalidation",
        c.base_url
    );
    let body = batch_xml(paths, &caller_reference());
    match request(http, c, creds, reqwest::Method::POST, &url, body).await {
        Ok(xml) => match xml_text(&xml, "Id") {
            Some(id) if xml_text(&xml, "Status").as_deref() == Some("Completed") => {
                ItemResult::Confirmed {
                    provider_id: Some(id),
                }
            }
            Some(id) => ItemResult::Pending { provider_id: id },
            None => ItemResult::Failed(super::Failure {
                error: "an invalidation answer without an Id".into(),
                retryable: true,
                retry_after: None,
            }),
        },
        Err(f) => ItemResult::Failed(f),
    }
}

pub async fn poll(
    http: &reqwest::Client,
    c: &PurgeTarget,
    distribution_id: &str,
    creds: &AwsCredentials,
    id: &str,
) -> PollResult {
    let url = format!(
        "{}/{API}/distribution/{distribution_id}/invalidation/{id}",
        c.base_url
    );
    match request(http, c, creds, reqwest::Method::GET, &url, String::new()).await {
        Ok(xml) => match xml_text(&xml, "Status").as_deref() {
            Some("Completed") => PollResult::Completed,
            _ => PollResult::InProgress,
        },
        Err(f) => PollResult::Failed(f),
    }
}

/// Sends one signed request: the 2xx answer's XML, or the failure.
async fn request(
    http: &reqwest::Client,
    c: &PurgeTarget,
    creds: &AwsCredentials,
    method: reqwest::Method,
    url: &str,
    body: String,
) -> Result<String, super::Failure> {
    let url = reqwest::Url::parse(url).map_err(|e| super::refused(format!("base_url: {e}")))?;
    let mut headers = vec![("host".to_string(), host(&url))];
    if !body.is_empty() {
        headers.push(("content-type".into(), "application/xml".into()));
    }
    let signed = sign(
        creds,
        method.as_str(),
        &url,
        &headers,
        body.as_bytes(),
        &amz_date(time::OffsetDateTime::now_utc()),
    );
    let mut b = http.request(method, url).timeout(c.timeout);
    for (name, value) in headers.iter().skip(1).chain(&signed) {
        b = b.header(name.as_str(), value.as_str());
    }
    let r = b
        .body(body)
        .send()
        .await
        .map_err(super::transport_failure)?;
    let (status, h, text) = super::read_answer(r).await;
    if status.is_success() {
        return Ok(text);
    }
    let code = xml_text(&text, "Code");
    let shown = match (&code, xml_text(&text, "Message")) {
        (Some(code), Some(m)) => format!("{code}: {m}"),
        (Some(code), None) => code.clone(),
        _ => text.clone(),
    };
    let mut f = super::http_failure(status, &h, &shown);
    if code.is_some_and(|c| RETRYABLE_CODES.contains(&c.as_str())) {
        f.retryable = true;
    }
    let mut secrets = vec![&creds.access_key_id, &creds.secret_access_key];
    secrets.extend(creds.session_token.as_ref());
    Err(super::redact(f, &secrets))
}

/// The text of the first element named `name` (any namespace), entities resolved.
pub fn xml_text(xml: &str, name: &str) -> Option<String> {
    let mut r = quick_xml::Reader::from_str(xml);
    let mut inside = false;
    let mut text = String::new();
    loop {
        match r.read_event().ok()? {
            Event::Start(e) if e.local_name().as_ref() == name => {
                inside = true;
                text.clear();
            }
            Event::Text(t) if inside => text.push_str(&t.xml10_content()),
            Event::CData(t) if inside => text.push_str(&t.xml10_content()),
            Event::GeneralRef(g) if inside => match g.resolve_char_ref() {
                Ok(Some(ch)) => text.push(ch),
                _ => text.push_str(quick_xml::escape::resolve_xml_entity(&g).unwrap_or("")),
            },
            Event::End(e) if inside && e.local_name().as_ref() == name => {
                return Some(text.trim().to_string());
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// `Host` as sent: the host, with the port when the URL names one.
fn host(url: &reqwest::Url) -> String {
    match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
        None => url.host_str().unwrap_or("").to_string(),
    }
}

/// `x-amz-date`: `yyyyMMddTHHmmssZ`, in UTC.
pub fn amz_date(now: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    now.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .expect("a UTC time in years 0-9999 formats")
}

/// The headers to add to a request so it is signed: `x-amz-date`, the session token if any
/// and `authorization`. `headers` are the others it carries (lower-case names, `host`
/// among them), all signed.
pub fn sign(
    creds: &AwsCredentials,
    method: &str,
    url: &reqwest::Url,
    headers: &[(String, String)],
    body: &[u8],
    amz_date: &str,
) -> Vec<(String, String)> {
    let mut added = vec![("x-amz-date".to_string(), amz_date.to_string())];
    if let Some(t) = &creds.session_token {
        added.push(("x-amz-security-token".into(), t.expose().to_string()));
    }
    let all: Vec<(String, String)> = headers.iter().chain(&added).cloned().collect();
    let (canonical, signed_headers) = canonical_request(method, url, &all, body);
    let scope = format!("{}/{REGION}/{SERVICE}/aws4_request", &amz_date[..8]);
    let signature = signature(
        creds.secret_access_key.expose(),
        amz_date,
        REGION,
        SERVICE,
        &canonical,
    );
    added.push((
        "authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, \
             Signature={signature}",
            creds.access_key_id.expose()
        ),
    ));
    added
}

/// The canonical request and its signed-header list. Path segments are URI-encoded once
/// more (the URL's path is already encoded once; services other than S3 sign it twice).
pub fn canonical_request(
    method: &str,
    url: &reqwest::Url,
    headers: &[(String, String)],
    body: &[u8],
) -> (String, String) {
    let path = url
        .path()
        .split('/')
        .map(uri_encode)
        .collect::<Vec<_>>()
        .join("/");
    let mut query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (uri_encode(&k), uri_encode(&v)))
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut hs: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (k.to_ascii_lowercase(), v)
        })
        .collect();
    hs.sort();
    let canonical_headers: String = hs.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed = hs
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical = format!(
        "{method}\n{path}\n{query}\n{canonical_headers}\n{signed}\n{}",
        hex::encode(Sha256::digest(body))
    );
    (canonical, signed)
}

/// Every byte but `A-Za-z0-9-._~` as `%XX`.
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The hex signature of a canonical request (string to sign, key derived from the secret).
pub fn signature(
    secret: &str,
    amz_date: &str,
    region: &str,
    service: &str,
    canonical: &str,
) -> String {
    let date = &amz_date[..8];
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac(format!("AWS4{secret}").as_bytes(), date);
    let k = hmac(&k, region);
    let k = hmac(&k, service);
    let k = hmac(&k, "aws4_request");
    hex::encode(hmac(&k, &to_sign))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::purge::Secret;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// AWS's Signature Version 4 test suite, `get-vanilla`.
    #[test]
    fn sigv4_get_vanilla() {
        let url = reqwest::Url::parse("https://example.amazonaws.com/").unwrap();
        let hs = h(&[
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ]);
        let (canonical, signed) = canonical_request("GET", &url, &hs, b"");
        assert_eq!(signed, "host;x-amz-date");
        assert_eq!(
            canonical,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        assert_eq!(
            signature(
                secret,
                "20150830T123600Z",
                "us-east-1",
                "service",
                &canonical
            ),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    /// The S3 `GET /test.txt` example of AWS's header-based SigV4 documentation.
    #[test]
    fn sigv4_s3_get_object_example() {
        let url = reqwest::Url::parse("https://examplebucket.s3.amazonaws.com/test.txt").unwrap();
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let hs = h(&[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", empty),
            ("x-amz-date", "20130524T000000Z"),
        ]);
        let (canonical, _) = canonical_request("GET", &url, &hs, b"");
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert_eq!(
            signature(secret, "20130524T000000Z", "us-east-1", "s3", &canonical),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn signed_headers_and_credential_scope() {
        let creds = AwsCredentials {
            access_key_id: Secret::new("AKIDEXAMPLE"),
            secret_access_key: Secret::new("s"),
            session_token: Some(Secret::new("tok")),
        };
        let url = reqwest::Url::parse("http://127.0.0.1:9/2020-05-31/x").unwrap();
        let out = sign(
            &creds,
            "POST",
            &url,
            &h(&[("host", "127.0.0.1:9")]),
            b"<x/>",
            "20240102T030405Z",
        );
        let auth = &out.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/us-east-1/cloudfront/\
             aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature="
        ));
        let t = time::OffsetDateTime::from_unix_timestamp(1_704_164_645).unwrap();
        assert_eq!(amz_date(t), "20240102T030405Z");
    }

    #[test]
    fn paths_and_xml() {
        assert_eq!(
            path(&Item::Url("https://h/a b?x=1&y".into())),
            "/a%20b?x=1&y"
        );
        assert_eq!(
            path(&Item::Prefix("www.example.com/blog/".into())),
            "/blog/*"
        );
        assert_eq!(path(&Item::Prefix("https://h/a".into())), "/a*");
        assert_eq!(path(&Item::Prefix("h".into())), "/*");
        assert_eq!(path(&Item::Everything), "/*");
        let xml = batch_xml(&["/a&b".into(), "/c".into()], "r1");
        assert!(xml.contains("<Quantity>2</Quantity><Items><Path>/a&amp;b</Path><Path>/c</Path>"));
        assert_eq!(xml_text(&xml, "Path").as_deref(), Some("/a&b"));
        assert_eq!(xml_text(&xml, "CallerReference").as_deref(), Some("r1"));
        assert_eq!(xml_text(&xml, "Nope"), None);
    }
}
