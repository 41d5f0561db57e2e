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
