//! Upgrade guards seen from a client: browser Origin and DNS-rebinding Host
//! headers are refused with 403 before any session exists.

mod common;

use common::TestServer;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Error;

async fn status_with(server: &TestServer, header: &'static str, value: &str) -> u16 {
    let mut request = server.url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert(header, HeaderValue::from_str(value).unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn browser_origin_is_refused_unless_allowed() {
    let server = TestServer::start();
    assert_eq!(
        status_with(&server, "origin", "https://evil.example").await,
        403
    );
    let allowed = TestServer::start_with(&[("CCX_ALLOWED_ORIGINS", "https://app.example")], &[]);
    assert_eq!(
        status_with(&allowed, "origin", "https://app.example").await,
        101
    );
    assert_eq!(
        status_with(&allowed, "origin", "https://evil.example").await,
        403
    );
}

#[tokio::test]
async fn foreign_host_header_is_refused_on_a_loopback_server() {
    let server = TestServer::start();
    let port = server.port;
    assert_eq!(
        status_with(&server, "host", &format!("rebind.example:{port}")).await,
        403
    );
    assert_eq!(
        status_with(&server, "host", &format!("localhost:{port}")).await,
        101
    );
}

#[tokio::test]
async fn tls_urls_are_refused_with_a_clear_reason_not_sent_in_plain_text() {
    let options = ccx::client::ConnectOptions::new("wss://127.0.0.1:9/ws/mcp");
    match ccx::client::Client::connect(&options).await {
        Err(ccx::client::ClientError::InvalidUrl { reason, .. }) => {
            assert!(reason.contains("wss://"), "{reason}")
        }
        Err(other) => panic!("expected an invalid-URL error, got {other}"),
        Ok(_) => panic!("connected to a TLS URL without TLS"),
    }
}

/// One HTTP/1.1 GET with the given extra headers: (status, body).
fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, _head, body) = common::http(port, "GET", path, headers, "");
    (status, body)
}

#[test]
fn verbose_health_refuses_a_rebound_host_and_a_foreign_origin() {
    let server = TestServer::start();
    let port = server.port;
    let path = "/health?verbose=1";
    // A page on a name rebound to 127.0.0.1 must not read the fingerprint
    // (hostname, uid, cwd, PATH, variable names).
    let (status, body) = get(port, path, &[("Host", &format!("rebind.example:{port}"))]);
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("\"info\""), "{body}");
    assert!(body.contains("rebind.example"), "{body}");
    let (status, body) = get(port, path, &[("Origin", "https://evil.example")]);
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("\"info\""), "{body}");
    let (status, body) = get(port, path, &[("Host", &format!("localhost:{port}"))]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"info\""), "{body}");
    // The short answer stays open to every probe, whatever its Host.
    let (status, body) = get(port, "/health", &[("Host", "rebind.example")]);
    assert_eq!(status, 200, "{body}");
}
