//! A minimal HTTP/1.1 client (hyper): one request per connection
//! ([`exchange`]), and a GET with a deadline for `/health` probes.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
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
    let stream = TcpStream::connect(authority).await?;
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .body(Full::new(Bytes::new()))
        .map_err(std::io::Error::other)?;
    let (status, _, body) = exchange(stream, request)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(HttpResponse {
        status,
        body: crate::sanitize::captured(&String::from_utf8_lossy(&body)),
    })
}

/// One request on a connected stream, and the whole answer: its status,
/// headers and body. The connection is dropped afterwards.
pub async fn exchange(
    stream: TcpStream,
    request: hyper::Request<Full<Bytes>>,
) -> Result<(u16, hyper::HeaderMap, Bytes), hyper::Error> {
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(connection);
    let answer = async {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, headers, body))
    }
    .await;
    driver.abort();
    answer
}
