//! A minimal HTTP/1.1 GET (hyper) with a deadline, for `/health` probes.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::protocol::Endpoint;

/// Status and body of a GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// GETs the endpoint's path at its authority (plain HTTP) within `deadline`.
pub async fn get_endpoint(
    endpoint: &Endpoint,
    deadline: Duration,
) -> std::io::Result<HttpResponse> {
    get(&endpoint.authority(), endpoint.path(), deadline).await
}

/// GETs `http://HOST:PORT/PATH` within `deadline` (connect, send and read).
pub async fn get(authority: &str, path: &str, deadline: Duration) -> std::io::Result<HttpResponse> {
    timeout(deadline, get_inner(authority, path))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no HTTP answer from {authority} within {deadline:?}"),
            )
        })?
}

async fn get_inner(authority: &str, path: &str) -> std::io::Result<HttpResponse> {
    let other = |e: hyper::Error| std::io::Error::other(e.to_string());
    let stream = TcpStream::connect(authority).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(other)?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(std::io::Error::other)?;
    let response = sender.send_request(request).await.map_err(other)?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(other)?
        .to_bytes();
    driver.abort();
    Ok(HttpResponse {
        status,
        body: crate::sanitize::captured(&String::from_utf8_lossy(&body)),
    })
}
