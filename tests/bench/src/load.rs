//! The load generator: a keep-alive hyper client, open-loop (fixed-rate) and closed-loop
//! (saturation) drivers.
//!
//! Request bodies are prepared [`Bytes`] shared by every request; the measuring path only
//! allocates what hyper needs (the request's header map and the task). Open-loop sends are
//! scheduled by a dedicated OS thread sleeping with `std::thread::sleep` (high-resolution
//! timers) instead of tokio's millisecond timer wheel, and latency is measured from the
//! scheduled send time, so a stalled system is not hidden (no coordinated omission).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Per-request timeout; a request that takes longer counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long before the first open-loop send the schedule starts (lets the thread start).
const SCHEDULE_LEAD: Duration = Duration::from_millis(20);

/// The shared keep-alive HTTP/1.1 client.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A keep-alive client with TCP_NODELAY and an unbounded idle pool.
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(usize::MAX)
        .build(connector)
}

/// One endpoint and the body posted to it.
#[derive(Clone, Debug)]
pub struct Target {
    /// `http://ADDR/v1/chat/completions`.
    pub uri: Uri,
    /// The serialised request.
    pub body: Bytes,
    /// Whether the answer is an SSE stream (then it must end with `[DONE]`).
    pub streamed: bool,
    /// The `Authorization` header sent with every request.
    pub auth: HeaderValue,
}

/// The `Authorization` header of requests without a virtual key (the mock, the bare
/// proxy and a gateway without a master key accept anything).
pub fn default_auth() -> HeaderValue {
    HeaderValue::from_static("Bearer sk-bench")
}

/// What happened to one request.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// When the request was handed to the client.
    pub started: Instant,
    /// When the first body byte arrived (`None` if none did).
    pub first_byte: Option<Instant>,
    /// When the body was fully read, or the request failed.
    pub finished: Instant,
    /// HTTP status (0 if no response).
    pub status: u16,
    /// Response body bytes read.
    pub bytes: usize,
    /// 200, complete body, and for streams a final `data: [DONE]`.
    pub ok: bool,
}

/// The last 8 bytes of a body, tracked without allocating.
#[derive(Default)]
struct Tail([u8; 8]);

impl Tail {
    const DONE: [u8; 8] = *b"[DONE]\n\n";

    fn push(&mut self, data: &[u8]) {
        let n = data.len().min(8);
        self.0.rotate_left(n);
        if let (Some(dst), Some(src)) = (self.0.get_mut(8 - n..), data.get(data.len() - n..)) {
            dst.copy_from_slice(src);
        }
    }
}

/// The POST of `target`'s body (shares the body's bytes, copies nothing).
pub fn request(target: &Target) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(target.body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = target.uri.clone();
    let headers = req.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(AUTHORIZATION, target.auth.clone());
    req
}

/// Send one request and read the whole response body.
pub async fn send(client: &HttpClient, target: &Target) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome {
        started,
        first_byte: None,
        finished: started,
        status: 0,
        bytes: 0,
        ok: false,
    };
    let req = request(target);
    let exchange = async {
        let resp = client.request(req).await.ok()?;
        out.status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut tail = Tail::default();
        while let Some(frame) = body.frame().await {
            let frame = frame.ok()?;
            if let Some(data) = frame.data_ref()
                && !data.is_empty()
            {
                out.first_byte.get_or_insert_with(Instant::now);
                out.bytes += data.len();
                tail.push(data);
            }
        }
        Some(tail)
    };
    let tail = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .ok()
        .flatten();
    out.finished = Instant::now();
    out.ok = match tail {
        Some(tail) => {
            out.status == StatusCode::OK.as_u16()
                && out.bytes > 0
                && (!target.streamed || tail.0 == Tail::DONE)
        }
        None => false,
    };
    out
}

/// One open-loop request: its scheduled send time and what happened.
#[derive(Clone, Copy, Debug)]
pub struct Scheduled {
    /// When it was due to be sent.
    pub due: Instant,
    /// What happened.
    pub outcome: Outcome,
}

/// Send `rate` requests per second for `seconds`, on schedule whatever the completions.
pub async fn open_loop(
    client: &HttpClient,
    target: &Target,
    rate: f64,
    seconds: f64,
) -> anyhow::Result<Vec<Scheduled>> {
    let sent = open_loop_with(client, target, rate, seconds, |client, target| async move {
        send(&client, &target).await
    })
    .await?;
    Ok(sent
        .into_iter()
        .map(|(due, outcome)| Scheduled { due, outcome })
        .collect())
}

/// The open loop of [`open_loop`] with its own `send`: each request, due at its scheduled
/// time, is `send(client, target)` in a task of its own; the answers in schedule order.
pub async fn open_loop_with<T, F, Fut>(
    client: &HttpClient,
    target: &Target,
    rate: f64,
    seconds: f64,
    send: F,
) -> anyhow::Result<Vec<(Instant, T)>>
where
    T: Send + 'static,
    F: Fn(HttpClient, Arc<Target>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let count = (rate * seconds).round().max(1.0) as usize;
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let client = client.clone();
    let target = Arc::new(target.clone());
    std::thread::Builder::new()
        .name("bench-scheduler".into())
        .spawn(move || {
            let start = Instant::now() + SCHEDULE_LEAD;
            let mut tasks = Vec::with_capacity(count);
            for i in 0..count {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                tasks.push((due, handle.spawn(send(client.clone(), target.clone()))));
            }
            let _ = tx.send(tasks);
        })?;
    let tasks = rx.await?;
    let mut results = Vec::with_capacity(tasks.len());
    for (due, task) in tasks {
        results.push((due, task.await?));
    }
    Ok(results)
}

/// Result of a closed-loop run.
#[derive(Debug, Default)]
pub struct ClosedLoop {
    /// Requests that succeeded and finished within the window.
    pub ok: u64,
    /// Requests that failed within the window.
    pub errors: u64,
    /// Requests that finished after the window (not counted, but their CPU is spent).
    pub late: u64,
    /// Latency of each successful request, microseconds.
    pub latencies_us: Vec<u64>,
    /// The window, seconds.
    pub seconds: f64,
}

/// `concurrency` workers, each sending the next request as soon as the last one finished,
/// for `seconds`. Only requests that finish within the window are counted.
pub async fn closed_loop(
    client: &HttpClient,
    target: &Target,
    concurrency: usize,
    seconds: f64,
) -> anyhow::Result<ClosedLoop> {
    let start = Instant::now();
    let window = Duration::from_secs_f64(seconds);
    let deadline = start + window;
    let target = Arc::new(target.clone());
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let client = client.clone();
        let target = target.clone();
        workers.push(tokio::spawn(async move {
            let mut result = ClosedLoop {
                latencies_us: Vec::with_capacity(16 * 1024),
                ..ClosedLoop::default()
            };
            while Instant::now() < deadline {
                let o = send(&client, &target).await;
                if o.finished > deadline {
                    result.late += 1;
                    break;
                }
                if o.ok {
                    result.ok += 1;
                    result
                        .latencies_us
                        .push(micros(o.finished.duration_since(o.started)));
                } else {
                    result.errors += 1;
                }
            }
            result
        }));
    }
    let mut total = ClosedLoop {
        seconds: window.as_secs_f64(),
        ..ClosedLoop::default()
    };
    for worker in workers {
        let r = worker.await?;
        total.ok += r.ok;
        total.errors += r.errors;
        total.late += r.late;
        total.latencies_us.extend_from_slice(&r.latencies_us);
    }
    Ok(total)
}

/// A duration in whole microseconds.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_tracks_last_bytes() {
        let mut t = Tail::default();
        t.push(b"data: {}\n\ndata: [DO");
        t.push(b"NE]");
        t.push(b"\n");
        t.push(b"");
        t.push(b"\n");
        assert_eq!(t.0, Tail::DONE);
        t.push(b"x");
        assert_ne!(t.0, Tail::DONE);
    }
}
