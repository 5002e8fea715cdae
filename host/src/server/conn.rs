//! Client connections: serving each one with hyper, under the limits hyper does not enforce
//! on its own.
//!
//! Without them a client holds a socket (and a file descriptor) for as long as it likes: an
//! idle keep-alive connection, a request head sent one byte every few seconds, a body that
//! never ends. Each connection here gets:
//! - a **header-read timeout**: from the first byte of a request head to its end;
//! - an **idle timeout**: from connect, or from the end of the previous response, to the
//!   first byte of the next request;
//! - a **body-read timeout**, applied where the handler reads the body
//!   ([`crate::api::read_body`]);
//!
//! and the acceptor ([`super::loops`]) caps the connections open at once.
//!
//! One watchdog per connection enforces the first two from a small shared state that the
//! connection's reads and writes and its requests keep up to date, so hyper's own header
//! timer (which counts idle time and header time as one) stays off. hyper's automatic
//! answers to requests it cannot parse (400, 414, 431, with empty bodies) are given a body
//! in OpenAI's error shape on their way out ([`ErrorBodies`]).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::task::TaskTracker;

use super::loops::{Conn, Handoff};
use crate::config::ClientLimits;

/// Serve the connections handed to this loop until `stop` turns true, then finish the
/// requests in flight (idle connections close at once).
pub async fn serve(
    app: Router,
    mut connections: Handoff,
    mut stop: tokio::sync::watch::Receiver<bool>,
    limits: ClientLimits,
) {
    let tasks = TaskTracker::new();
    loop {
        let (io, addr) = tokio::select! {
            c = connections.next() => c,
            _ = stop.wait_for(|s| *s) => break,
        };
        tasks.spawn(connection(app.clone(), io, addr, stop.clone(), limits));
    }
    tasks.close();
    tasks.wait().await;
}

/// What a connection's watchdog reads: kept up to date by its reads and writes
/// ([`Watched`]) and its requests ([`Guarded`]).
struct Activity {
    started: Instant,
    /// Requests whose response body has not been handed over yet.
    in_flight: AtomicUsize,
    /// Bytes of a new request head have arrived since the connection was last idle.
    reading_head: AtomicBool,
    /// Milliseconds after `started` when the current phase (idle, or reading a head) began.
    since_ms: AtomicU64,
    /// Told when the phase changes, so the watchdog re-arms for the new phase's limit.
    changed: tokio::sync::Notify,
}

impl Activity {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.reading_head.store(false, Ordering::Relaxed);
    }

    fn request_finished(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.since_ms.store(self.now_ms(), Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    /// Bytes arrived: the first ones while idle start a request head's clock.
    fn read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && !self.reading_head.swap(true, Ordering::Relaxed)
        {
            self.since_ms.store(self.now_ms(), Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    /// Bytes left: a response still being written to a slow reader is not idleness.
    fn wrote(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0 && !self.reading_head.load(Ordering::Relaxed)
        {
            self.since_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }
}

/// Why a watchdog closed a connection.
#[derive(Debug, Clone, Copy)]
enum Expired {
    Idle,
    HeaderRead,
}

/// Resolves when the connection has been idle, or reading one request head, for too long.
async fn watchdog(activity: &Activity, limits: ClientLimits) -> Expired {
    loop {
        let changed = activity.changed.notified();
        let (phase, limit) = if activity.in_flight.load(Ordering::Relaxed) > 0 {
            // Requests in flight: their bodies have their own timeout; wait for the next
            // phase.
            changed.await;
            continue;
        } else if activity.reading_head.load(Ordering::Relaxed) {
            (Expired::HeaderRead, limits.header_read_timeout)
        } else {
            (Expired::Idle, limits.idle_timeout)
        };
        let since = Duration::from_millis(activity.since_ms.load(Ordering::Relaxed));
        let deadline = activity.started + since + limit;
        if Instant::now() >= deadline {
            return phase;
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline.into()) => {}
            () = changed => {}
        }
    }
}

async fn connection(
    app: Router,
    io: Conn,
    addr: SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
    limits: ClientLimits,
) {
    let activity = Arc::new(Activity {
        started: Instant::now(),
        in_flight: AtomicUsize::new(0),
        reading_head: AtomicBool::new(false),
        since_ms: AtomicU64::new(0),
        changed: tokio::sync::Notify::new(),
    });
    let io = TokioIo::new(Watched {
        io: ErrorBodies::new(io),
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: http::Request<Incoming>| {
            activity.request_started();
            let guard = InFlight(activity.clone());
            let app = app.clone();
            async move {
                let resp = tower::ServiceExt::oneshot(app, req.map(Body::new)).await;
                Ok::<_, Infallible>(match resp {
                    Ok(r) => r.map(|body| Guarded {
                        body,
                        _guard: guard,
                    }),
                    Err(never) => match never {},
                })
            }
        })
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // The watchdog times heads and idleness; hyper's header timer would count both as one.
    builder.http1().header_read_timeout(None);
    let mut conn = std::pin::pin!(builder.serve_connection_with_upgrades(io, service));
    let mut dog = std::pin::pin!(watchdog(&activity, limits));
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%addr, "client connection ended: {e}");
                }
                return;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            expired = &mut dog => {
                tracing::debug!(%addr, ?expired, "closing a client connection: timed out");
                return;
            }
        }
    }
}

/// Counts a request in flight until its response body is dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that keeps its request counted in flight while hyper sends it.
struct Guarded {
    body: Body,
    _guard: InFlight,
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The connection's socket, telling the watchdog about reads and writes.
struct Watched<T> {
    io: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Gives hyper's automatic protocol-error answers a body.
///
/// When hyper cannot parse a request head it answers by itself, before any handler runs,
/// with `400 Bad Request`, `414 URI Too Long` or `431 Request Header Fields Too Large` and
/// an empty body (`content-length: 0`), then closes. No handler of ours ever answers one of
/// those statuses without a body, so that exact head is recognised when it is written and
/// replaced by the same status with an error body in OpenAI's shape.
struct ErrorBodies<T> {
    io: T,
    /// A replacement answer still being written.
    pending: Option<(Bytes, usize)>,
}

impl<T> ErrorBodies<T> {
    fn new(io: T) -> Self {
        Self { io, pending: None }
    }
}

/// The answer that replaces hyper's empty one for `head`, if `head` is one of them.
fn error_answer(head: &[u8]) -> Option<Bytes> {
    let (status, message, kind) = if head.starts_with(b"HTTP/1.1 400 Bad Request\r\n") {
        (
            "400 Bad Request",
            "the request could not be parsed as HTTP/1.1",
            "invalid_request_error",
        )
    } else if head.starts_with(b"HTTP/1.1 414 URI Too Long\r\n") {
        (
            "414 URI Too Long",
            "the request's URI is too long",
            "invalid_request_error",
        )
    } else if head.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n") {
        (
            "431 Request Header Fields Too Large",
            "the request's headers are too large",
            "invalid_request_error",
        )
    } else {
        return None;
    };
    // hyper's own answer: a head alone, declaring an empty body.
    let end = memchr::memmem::find(head, b"\r\n\r\n")?;
    let lower = head[..end].to_ascii_lowercase();
    if memchr::memmem::find(&lower, b"\r\ncontent-length: 0").is_none() || head.len() != end + 4 {
        return None;
    }
    let body = serde_json::json!({
        "error": {"message": message, "type": kind, "param": null, "code": status[..3].to_string()}
    })
    .to_string();
    Some(Bytes::from(format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )))
}

impl<T: AsyncWrite + Unpin> ErrorBodies<T> {
    /// Write what is left of a replacement answer; ready when all of it is out.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, sent)) = &mut self.pending {
            if *sent >= bytes.len() {
                self.pending = None;
                break;
            }
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &bytes[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ErrorBodies<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ErrorBodies<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        if let Some(answer) = error_answer(buf) {
            self.pending = Some((answer, 0));
            // The replacement goes out on this and later polls; hyper's bytes count as sent.
            return match self.poll_pending(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Ready(Ok(buf.len())),
            };
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next())
            && let Some(answer) = error_answer(only)
        {
            self.pending = Some((answer, 0));
            return match self.poll_pending(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Ready(Ok(only.len())),
            };
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_empty_error_heads_are_replaced() {
        let hyper_431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 05:00:00 GMT\r\n\r\n";
        let answer = error_answer(hyper_431).expect("replaced");
        let text = std::str::from_utf8(&answer).expect("utf-8");
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        let body = text.split("\r\n\r\n").nth(1).expect("a body");
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["error"]["code"], "431");
        // Our own 400s carry a body: left alone.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n";
        assert!(error_answer(ours).is_none());
        // A head followed by body bytes in one write is not hyper's automatic answer.
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nx";
        assert!(error_answer(with_body).is_none());
        assert!(error_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
    }
}
