//! A started stream: upstream bytes are framed into events, translated by the plugin and
//! written out; any break (a stall, the time limit, a cut-off upstream, a plugin error or
//! trap) ends the stream with an error event in the client's dialect. The stream settles
//! the request's [`Billing`] when it ends; if the client goes away first, dropping it
//! charges the estimate so far.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;

use super::billing::Billing;
use super::sse::{self, Framer};
use super::stats::InFlight;
use super::upstream::scrub_error;
use super::{Call, plugin_error};
use crate::config::Deployment;
use crate::error::{Dialect, Error};
use crate::wit::types::{ErrorClass, Framing};
use crate::plugins::provider::Exchange;
use crate::plugins::{SseEvent, Usage};

/// Most bytes of a streamed response kept for full request logging.
const LOGGED_STREAM_CAP: usize = 1 << 20;

/// A 2xx stream an attempt committed to, before the client's body is made of it.
pub(super) struct Started {
    pub ex: Exchange,
    pub resp: reqwest::Response,
    pub framing: Framing,
    /// The plugin's response headers.
    pub headers: Vec<(String, String)>,
    pub in_flight: InFlight,
    pub sent_at: Instant,
    /// The key read from the environment for this attempt (masked in stream errors like
    /// the deployment's own secrets).
    pub env_key: Option<String>,
}

impl Started {
    /// The stream's state, from the request and the deployment that answers it.
    pub fn into_state(self, call: &Call, dep: Arc<Deployment>, billing: Billing) -> StreamState {
        let max_duration = call.config.max_stream_duration;
        StreamState {
            ex: self.ex,
            upstream: self.resp.bytes_stream().boxed(),
            framer: Framer::new(self.framing),
            billing,
            limits: Limits {
                idle: dep.timeout,
                idle_event: call.config.stream_idle_timeout,
                max_duration,
                ends_at: max_duration.map(|d| self.sent_at + d),
            },
            dialect: call.dialect,
            dep,
            env_key: self.env_key,
            in_flight: self.in_flight,
            sent_at: self.sent_at,
            first: true,
            emitted: 0,
            last_event: Instant::now(),
            out: BytesMut::new(),
            logged: BytesMut::new(),
            failed: None,
        }
    }
}

/// How long a stream may wait and run.
struct Limits {
    /// Longest wait for the next upstream bytes (the deployment's `timeout`).
    idle: Duration,
    /// Longest wait for the next upstream event: bytes that frame no event (SSE comments,
    /// keep-alive blank lines) do not count.
    idle_event: Duration,
    /// Longest the whole stream may run, from the request being sent.
    max_duration: Option<Duration>,
    /// When that is.
    ends_at: Option<Instant>,
}

/// Everything a running stream holds.
pub(super) struct StreamState {
    ex: Exchange,
    upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    framer: Framer,
    billing: Billing,
    limits: Limits,
    dialect: Dialect,
    dep: Arc<Deployment>,
    env_key: Option<String>,
    in_flight: InFlight,
    sent_at: Instant,
    /// No upstream bytes yet.
    first: bool,
    /// Events written out since the last charge.
    emitted: u64,
    last_event: Instant,
    /// Bytes for the client, not yet handed over.
    out: BytesMut,
    /// What was streamed, for full request logging.
    logged: BytesMut,
    /// The break that ends the stream, if any.
    failed: Option<Error>,
}

/// The client body of a started stream.
pub(super) fn body(state: StreamState) -> Body {
    let stream = async_stream::stream! {
        let mut state = state;
        while let Some(bytes) = state.next_chunk().await {
            yield Ok::<Bytes, Infallible>(bytes);
        }
        let (last, ex) = state.finish().await;
        if !last.is_empty() {
            yield Ok(last);
        }
        // The last bytes are handed over: tear the instance down and make a spare.
        ex.plugin().clone().recycle(ex);
    };
    Body::from_stream(stream)
}

impl StreamState {
    /// Read the upstream until there is something for the client; `None` once reading has
    /// ended (the upstream's end, or a break kept in `failed`).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            let chunk = match self.next_bytes().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => {
                    self.end_of_upstream().await;
                    return None;
                }
                Err(e) => {
                    self.failed = Some(e);
                    return None;
                }
            };
            self.on_bytes();
            self.framer.push(&chunk);
            if let Err(e) = self.translate_framed().await {
                self.failed = Some(e);
                return None;
            }
            if let Some(bytes) = self.flush() {
                return Some(bytes);
            }
        }
    }

    /// The next upstream bytes: they must come within `idle`, an event within `idle_event`
    /// of the last one, and the stream must end by `ends_at`, whichever is first.
    async fn next_bytes(&mut self) -> Result<Option<Bytes>, Error> {
        let now = Instant::now();
        let limits = &self.limits;
        let mut wait = limits
            .idle
            .min((self.last_event + limits.idle_event).saturating_duration_since(now));
        if let Some(end) = limits.ends_at {
            wait = wait.min(end.saturating_duration_since(now));
        }
        match tokio::time::timeout(wait, self.upstream.next()).await {
            Err(_) => Err(self.timed_out()),
            Ok(None) => Ok(None),
            Ok(Some(Err(e))) => Err(stream_error(format!(
                "the upstream stream broke off: {e} (deployment {})",
                self.dep.id
            ))),
            Ok(Some(Ok(bytes))) => Ok(Some(bytes)),
        }
    }

    /// Which limit a wait that timed out ran into.
    fn timed_out(&self) -> Error {
        let (limits, deployment) = (&self.limits, &self.dep.id);
        let now = Instant::now();
        stream_timeout(if limits.ends_at.is_some_and(|end| now >= end) {
            format!(
                "the upstream stream ran longer than the {:.0}s allowed (llmgate.max_stream_duration_seconds; deployment {deployment})",
                limits.max_duration.unwrap_or_default().as_secs_f64()
            )
        } else if now >= self.last_event + limits.idle_event {
            format!(
                "the upstream stream sent no event for {:.0}s (llmgate.stream_idle_timeout_seconds; deployment {deployment})",
                limits.idle_event.as_secs_f64()
            )
        } else {
            format!(
                "the upstream stream stalled for {:.0}s (deployment {deployment})",
                limits.idle.as_secs_f64()
            )
        })
    }

    /// Upstream bytes arrived: the first ones are the time to first event.
    fn on_bytes(&mut self) {
        if self.first {
            self.first = false;
            self.in_flight
                .first_event(self.sent_at.elapsed().as_micros() as u64);
            self.billing.first_byte();
        }
    }

    /// Translate every complete event framed so far.
    async fn translate_framed(&mut self) -> Result<(), Error> {
        loop {
            match self.framer.next_event() {
                Ok(Some(ev)) => {
                    self.last_event = Instant::now();
                    self.emitted += self.translate(&ev).await?;
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.frame_error(&e.0)),
            }
        }
    }

    /// The upstream ended: the event its last bytes frame, if any.
    async fn end_of_upstream(&mut self) {
        let last = match self.framer.finish() {
            Ok(Some(ev)) => self.translate(&ev).await.err(),
            Ok(None) => None,
            Err(e) => Some(self.frame_error(&e.0)),
        };
        self.failed = last;
    }

    /// Have the plugin translate one upstream event into `out`; how many it wrote.
    async fn translate(&mut self, ev: &SseEvent) -> Result<u64, Error> {
        match self.ex.on_event(ev).await {
            Ok(Ok(evs)) => {
                evs.iter().for_each(|e| sse::encode(&mut self.out, e));
                Ok(evs.len() as u64)
            }
            Ok(Err(e)) => Err(plugin_error(e, Some(&self.dep.id))),
            Err(f) => Err(f.into()),
        }
    }

    fn frame_error(&self, message: &str) -> Error {
        stream_error(format!("{message} (deployment {})", self.dep.id))
    }

    /// Hand `out` over, charging its events and keeping a copy for full logging.
    fn flush(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            return None;
        }
        let events = std::mem::take(&mut self.emitted);
        self.billing.charge_events(events, &self.dep.prices);
        if self.billing.stores_prompts() && self.logged.len() < LOGGED_STREAM_CAP {
            self.logged.extend_from_slice(&self.out);
        }
        Some(self.out.split().freeze())
    }

    /// The upstream is done (or broke): the plugin's closing events and usage, the bill,
    /// and the error event after a break. Returns the last bytes for the client and the
    /// exchange to recycle once they are handed over.
    async fn finish(mut self) -> (Bytes, Exchange) {
        // What reaches the client, the log and the spend log has the secrets masked.
        self.scrub_failure();
        let closed = self.close_exchange().await;
        self.scrub_failure();
        let Self {
            ex,
            billing,
            dialect,
            dep,
            in_flight,
            sent_at,
            mut out,
            logged,
            failed,
            ..
        } = self;
        billing.end_stream(&dep, closed, failed.as_ref(), &logged);
        in_flight.done(failed.is_none(), sent_at.elapsed().as_micros() as u64);
        if let Some(err) = &failed {
            tracing::warn!(deployment = %dep.id, kind = err.kind(), "stream ended with an error: {err}");
            sse::encode(&mut out, &error_event(dialect, err));
        }
        (out.freeze(), ex)
    }

    /// The plugin's `finish`: its closing events go out (unless the stream broke: they
    /// would dress a cut-off answer up as a complete one); its usage, if it succeeded.
    async fn close_exchange(&mut self) -> Option<Option<Usage>> {
        let err = match self.ex.finish().await {
            Ok(Ok((events, usage))) => {
                if self.failed.is_none() {
                    events.iter().for_each(|e| sse::encode(&mut self.out, e));
                }
                if self.billing.stores_prompts() {
                    events.iter().for_each(|e| sse::encode(&mut self.logged, e));
                }
                return Some(usage);
            }
            Ok(Err(e)) => plugin_error(e, Some(&self.dep.id)),
            Err(f) => f.into(),
        };
        self.failed.get_or_insert(err);
        None
    }

    fn scrub_failure(&mut self) {
        let (scrubber, env_key) = (&self.dep.scrubber, self.env_key.as_deref());
        self.failed = self
            .failed
            .take()
            .map(|e| scrub_error(e, scrubber, env_key));
    }
}

/// The client's view of an error inside an already-started stream.
fn error_event(dialect: Dialect, err: &Error) -> SseEvent {
    let body = err.body(dialect);
    SseEvent {
        event: matches!(dialect, Dialect::Anthropic).then(|| "error".to_string()),
        data: body.to_string(),
    }
}

/// A started stream that ran out of time.
fn stream_timeout(message: String) -> Error {
    Error::Upstream {
        class: ErrorClass::Timeout,
        status: 504,
        message,
        code: Some("timeout".into()),
        retry_after_ms: None,
    }
}

/// A started stream that broke.
fn stream_error(message: String) -> Error {
    Error::Upstream {
        class: ErrorClass::Upstream,
        status: 502,
        message,
        code: Some("stream_error".into()),
        retry_after_ms: None,
    }
}
