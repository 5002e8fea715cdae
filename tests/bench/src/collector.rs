//! A stand-in OTLP/HTTP collector for `--observe`: it accepts every export (`POST
//! /v1/traces`), reads the body whole and answers 200 with an empty
//! `ExportTraceServiceResponse`, so the gateway does all the work of exporting (building,
//! batching, encoding and sending spans) and none of a collector's is measured.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// Export requests received.
static EXPORTS: AtomicU64 = AtomicU64::new(0);
/// Bytes of export bodies received.
static BYTES: AtomicU64 = AtomicU64::new(0);

/// Start the collector on a thread of its own; its base URL (`http://127.0.0.1:PORT`).
pub fn spawn() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the collector")?;
    listener.set_nonblocking(true)?;
    let url = format!("http://{}", listener.local_addr()?);
    std::thread::Builder::new()
        .name("bench-collector".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(async move {
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(socket), service_fn(accept))
                            .await;
                    });
                }
            });
        })
        .context("starting the collector thread")?;
    Ok(url)
}

async fn accept(req: Request<hyper::body::Incoming>) -> anyhow::Result<Response<Full<Bytes>>> {
    let body = req.into_body().collect().await?.to_bytes();
    EXPORTS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(body.len() as u64, Ordering::Relaxed);
    Ok(Response::builder()
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::new()))?)
}

/// `(export requests, bytes)` received so far.
pub fn received() -> (u64, u64) {
    (
        EXPORTS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    )
}
