//! Self-test of the fake CDNs in `common/fakecdn.rs`, with a plain hyper client over real
//! sockets (tokio-rustls for HTTPS, trusting only the test CA).

mod common;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::fakecdn::{
    BIG_LEN, CdnOptions, TestCa, blackhole, closed_port, http_cdn, http_cdn_on, https_cdn,
};
use http::HeaderMap;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::CertificateError;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

/// One request on a fresh HTTP/1.1 connection over `io`.
async fn request<IO>(io: IO, method: &str, path: &str, host: &str, extra: &[(&str, &str)]) -> Reply
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    let tcp = TcpStream::connect(addr).await.unwrap();
    request(tcp, "GET", path, &addr.to_string(), &[]).await
}

async fn tls_connect(
    ca: &TestCa,
    addr: SocketAddr,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    TlsConnector::from(ca.client_config())
        .connect(name, tcp)
        .await
}

/// The certificate error inside a failed client handshake.
fn cert_error(err: &std::io::Error) -> CertificateError {
    match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(c)) => c.clone(),
        _ => panic!("not a certificate error: {err:?}"),
    }
}

#[tokio::test]
async fn http_serves_routes_and_records_requests() {
    let cdn = http_cdn(CdnOptions::default()).await;
    assert_eq!(cdn.hits(), 0);

    let r = get(cdn.addr(), "/health").await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"ok\n");
    assert_eq!(cdn.hits(), 1);
    assert_eq!(cdn.last_host(), Some(cdn.addr().to_string()));
    assert_eq!(cdn.last_path().as_deref(), Some("/health"));

    let r = get(cdn.addr(), "/canary.txt").await;
    assert_eq!((r.status, &r.body[..]), (200, &b"ok\n"[..]));
    let r = get(cdn.addr(), "/anything/else").await;
    assert_eq!((r.status, &r.body[..]), (200, &b"ok\n"[..]));

    let r = get(cdn.addr(), "/big").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), BIG_LEN);
    assert!(r.body.iter().all(|&b| b == b'x'));

    let tcp = TcpStream::connect(cdn.addr()).await.unwrap();
    let r = request(
        tcp,
        "HEAD",
        "/health",
        "cdn.example",
        &[("user-agent", "steerd-test"), ("x-probe", "1")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty(), "HEAD has no body");
    assert_eq!(cdn.last_method().as_deref(), Some("HEAD"));
    assert_eq!(cdn.last_host().as_deref(), Some("cdn.example"));
    assert_eq!(
        cdn.last_header("User-Agent").as_deref(),
        Some("steerd-test")
    );
    assert!(
        cdn.last_headers()
            .contains(&("x-probe".to_string(), "1".to_string()))
    );
    assert_eq!(cdn.hits(), 5);
}

#[tokio::test]
async fn status_body_and_cache_headers() {
    let cdn = http_cdn(
        CdnOptions::default()
            .status(503)
            .body("down\n")
            .header("X-Cache", "HIT")
            .header("Age", "42"),
    )
    .await;
    for path in ["/health", "/canary.txt"] {
        let r = get(cdn.addr(), path).await;
        assert_eq!(r.status, 503, "{path}");
        assert_eq!(&r.body[..], b"down\n", "{path}");
        assert_eq!(r.headers["x-cache"], "HIT", "{path}");
        assert_eq!(r.headers["age"], "42", "{path}");
    }
    let r = get(cdn.addr(), "/big").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["x-cache"], "HIT");
}

#[tokio::test]
async fn delay_holds_back_the_response() {
    let cdn = http_cdn(CdnOptions::default().delay(Duration::from_millis(200))).await;
    let t = Instant::now();
    let r = get(cdn.addr(), "/health").await;
    assert_eq!(r.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn https_verifies_against_the_test_ca() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let pem_path = ca.write_pem(dir.path());
    assert_eq!(pem_path, dir.path().join("ca.pem"));
    let pem = std::fs::read_to_string(&pem_path).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(pem, ca.cert_pem());

    let cdn = https_cdn(
        CdnOptions::default().header("X-Cache", "MISS"),
        ca.leaf(&["cdn.test", "127.0.0.1"], 30),
    )
    .await;

    // Right name: handshake verifies, SNI and Host recorded.
    let tls = tls_connect(&ca, cdn.addr(), "cdn.test").await.unwrap();
    let r = request(tls, "GET", "/health", "cdn.test", &[]).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"ok\n"[..]));
    assert_eq!(r.headers["x-cache"], "MISS");
    assert_eq!(cdn.last_sni().as_deref(), Some("cdn.test"));
    assert_eq!(cdn.last_host().as_deref(), Some("cdn.test"));
    assert_eq!(cdn.tls_handshakes(), 1);
    assert_eq!(cdn.hits(), 1);

    // IP SAN: verifies; rustls sends no SNI for an IP address.
    let tls = tls_connect(&ca, cdn.addr(), "127.0.0.1").await.unwrap();
    let r = request(tls, "GET", "/canary.txt", "127.0.0.1", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(cdn.last_sni(), None);

    // Wrong name: the client rejects the certificate; the SNI was still seen.
    let err = tls_connect(&ca, cdn.addr(), "wrong.test")
        .await
        .unwrap_err();
    assert!(
        matches!(
            cert_error(&err),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        ),
        "wrong-name error: {err}"
    );
    assert_eq!(cdn.last_sni().as_deref(), Some("wrong.test"));

    // A different CA is not trusted.
    let other = TestCa::new();
    let err = tls_connect(&other, cdn.addr(), "cdn.test")
        .await
        .unwrap_err();
    assert_eq!(cert_error(&err), CertificateError::UnknownIssuer, "{err}");
    assert_eq!(cdn.tls_handshakes(), 2);

    // Expired leaf.
    let expired = https_cdn(CdnOptions::default(), ca.leaf(&["cdn.test"], -1)).await;
    let err = tls_connect(&ca, expired.addr(), "cdn.test")
        .await
        .unwrap_err();
    assert!(
        matches!(
            cert_error(&err),
            CertificateError::Expired | CertificateError::ExpiredContext { .. }
        ),
        "expired error: {err}"
    );
    assert_eq!(expired.last_sni().as_deref(), Some("cdn.test"));
    assert_eq!(expired.hits(), 0);
}

#[tokio::test]
async fn blackhole_accepts_but_never_answers() {
    let hole = blackhole().await;
    let mut s = TcpStream::connect(hole.addr()).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = timeout(Duration::from_millis(300), s.read(&mut buf)).await;
    assert!(read.is_err(), "black hole answered: {read:?}");
    assert_eq!(hole.connections(), 1);
    assert_eq!(hole.hits(), 0);

    // Killing it closes the held connection.
    hole.kill().await;
    let n = timeout(Duration::from_millis(300), s.read(&mut buf))
        .await
        .expect("closed connection reads at once");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
}

#[tokio::test]
async fn closed_port_refuses() {
    let addr = closed_port();
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

/// Send one keep-alive request on `s` and read its whole response (body "ok\n").
async fn keepalive_exchange(s: &mut TcpStream) -> String {
    s.write_all(b"GET /health HTTP/1.1\r\nHost: cdn.test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\nok\n") {
        let n = timeout(Duration::from_secs(1), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "early EOF: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

#[tokio::test]
async fn kill_refuses_new_connects_and_closes_keepalive() {
    let cdn = http_cdn(CdnOptions::default()).await;
    let addr = cdn.addr();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let resp = keepalive_exchange(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    keepalive_exchange(&mut s).await; // the connection is really kept alive
    assert_eq!(cdn.hits(), 2);
    assert_eq!(cdn.open_connections(), 1);

    cdn.kill().await;

    let mut buf = [0u8; 64];
    let n = timeout(Duration::from_millis(300), s.read(&mut buf))
        .await
        .expect("killed connection reads at once");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);

    // The target comes back on the same port.
    let back = http_cdn_on(addr, CdnOptions::default().body("back\n")).await;
    assert_eq!(back.addr(), addr);
    let r = get(addr, "/health").await;
    assert_eq!(&r.body[..], b"back\n");
}

#[tokio::test]
async fn drop_is_as_dead_as_kill() {
    let ca = TestCa::new();
    let cdn = https_cdn(CdnOptions::default(), ca.leaf(&["cdn.test"], 1)).await;
    let addr = cdn.addr();
    let tls = tls_connect(&ca, addr, "cdn.test").await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let req = || {
        http::Request::builder()
            .uri("/health")
            .header("host", "cdn.test")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    assert_eq!(sender.send_request(req()).await.unwrap().status(), 200);

    drop(cdn);

    // No await between the drop and the connect: the listener is already gone.
    let err = std::net::TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    // The keep-alive connection ends (without close_notify).
    let ended = timeout(Duration::from_millis(500), conn)
        .await
        .expect("connection ends");
    assert!(ended.is_ok());
    assert!(sender.send_request(req()).await.is_err());
}
