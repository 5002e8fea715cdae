//! The reference hop: a bare HTTP/1.1 reverse proxy with no logic at all.
//!
//! Measured beside the gateway so the cost of the second hop itself (two more sockets, two
//! more wake-ups of an idle process, one more HTTP parse and write each way) can be told
//! apart from what the gateway adds on top of it. It is built the way a minimal production
//! proxy in Rust is: tokio's multi-threaded runtime with one worker per core (as llmgate by
//! default), hyper's server, a pooled keep-alive hyper client with `TCP_NODELAY`, the
//! request body read whole before forwarding (as llmgate does), the response streamed
//! back as it arrives.

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::HOST;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;

use crate::load::HttpClient;

/// Printed on stdout once the proxy accepts connections, followed by its base URL.
pub const LISTENING: &str = "bare proxy listening on ";

/// Run the proxy in front of `upstream` (`http://HOST:PORT`) until killed.
pub fn run(upstream: &str) -> anyhow::Result<()> {
    let upstream: Uri = upstream
        .parse()
        .with_context(|| format!("bad upstream URL {upstream}"))?;
    let authority = upstream
        .authority()
        .context("the upstream URL has no host")?
        .clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{LISTENING}http://{}", listener.local_addr()?);
        let client = crate::load::client();
        loop {
            let (socket, _) = listener.accept().await?;
            socket.set_nodelay(true)?;
            let (client, authority) = (client.clone(), authority.clone());
            tokio::spawn(async move {
                let service =
                    service_fn(move |req| forward(client.clone(), authority.clone(), req));
                // A client closing its connection ends this task; nothing to report.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    })
}

/// Forward one request to the upstream and hand its response back as it streams.
async fn forward(
    client: HttpClient,
    authority: hyper::http::uri::Authority,
    req: Request<Incoming>,
) -> anyhow::Result<Response<Incoming>> {
    let (parts, body) = req.into_parts();
    let body: Bytes = body.collect().await?.to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", hyper::http::uri::PathAndQuery::as_str);
    let uri: Uri = format!("http://{authority}{path}").parse()?;
    let mut out = Request::new(Full::new(body));
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    *out.headers_mut() = parts.headers;
    out.headers_mut().remove(HOST);
    Ok(client.request(out).await?)
}
