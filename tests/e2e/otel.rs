//! OpenTelemetry traces: the gateway exports a span per request, per attempt and per plugin
//! call to a real OTLP receiver (HTTP/protobuf and gRPC, run here on loopback with the
//! OpenTelemetry protobuf types), and the upstream gets the attempt's `traceparent`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use serde_json::{Value, json};

use crate::support::admin::generate;
use crate::support::http::send;
use crate::support::mock::{UPSTREAM_KEY, keyed_mock};
use crate::support::{Config, Deployment, Gateway, Spec};

const MASTER: &str = "sk-master-otel-5678";

/// What a receiver got: every export request, as received.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

impl Received {
    fn push(&self, req: ExportTraceServiceRequest) {
        self.0.lock().unwrap().push(req);
    }

    /// Every span received, with its resource's `service.name`.
    fn spans(&self) -> Vec<(String, Span)> {
        let mut out = Vec::new();
        for req in self.0.lock().unwrap().iter() {
            for rs in &req.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                    .and_then(|a| a.value.as_ref())
                    .map(|v| format!("{:?}", v.value))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        out.push((service.clone(), s.clone()));
                    }
                }
            }
        }
        out
    }

    /// Every export request's protobuf bytes.
    fn bytes(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.encode_to_vec())
            .collect()
    }
}

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf) on loopback: its base URL.
async fn http_receiver(got: Received) -> String {
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: bytes::Bytes| {
            let got = got.clone();
            async move {
                got.push(ExportTraceServiceRequest::decode(body).unwrap());
                (
                    [(http::header::CONTENT_TYPE, "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The gRPC trace service.
struct Grpc(Received);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.push(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver on loopback: its URL.
async fn grpc_receiver(got: Received) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Grpc(got)))
            .serve_with_incoming(incoming),
    );
    format!("http://{addr}")
}

/// A string, int or bool attribute of a span, as JSON.
fn attr(span: &Span, key: &str) -> Value {
    let Some(v) = span
        .attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
    else {
        return Value::Null;
    };
    match v {
        Any::StringValue(s) => json!(s),
        Any::IntValue(i) => json!(i),
        Any::BoolValue(b) => json!(b),
        Any::DoubleValue(d) => json!(d),
        other => json!(format!("{other:?}")),
    }
}

/// One request's trace as the receiver got it.
struct Trace {
    root: Span,
    attempts: Vec<Span>,
    plugins: Vec<Span>,
}

/// Wait until the receiver holds the trace `trace_id` with its root span and `attempts`
/// attempt spans.
async fn trace_of(got: &Received, trace_id: &[u8], attempts: usize) -> (String, Trace) {
    for _ in 0..200 {
        let spans: Vec<(String, Span)> = got
            .spans()
            .into_iter()
            .filter(|(_, s)| s.trace_id == trace_id)
            .collect();
        let of = |k: SpanKind| -> Vec<Span> {
            spans
                .iter()
                .filter(|(_, s)| s.kind == k as i32)
                .map(|(_, s)| s.clone())
                .collect()
        };
        let (roots, mut tries) = (of(SpanKind::Server), of(SpanKind::Client));
        if roots.len() == 1 && tries.len() == attempts {
            tries.sort_by_key(|s| s.start_time_unix_nano);
            let service = spans[0].0.clone();
            return (
                service,
                Trace {
                    root: roots[0].clone(),
                    attempts: tries,
                    plugins: of(SpanKind::Internal),
                },
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no trace {} with {attempts} attempts; got {:?}",
        hex::encode(trace_id),
        got.spans()
            .iter()
            .map(|(_, s)| (hex::encode(&s.trace_id), s.name.clone()))
            .collect::<Vec<_>>()
    );
}

/// A gateway exporting to `endpoint` over `protocol`, with a master key and an upstream
/// key: `gpt-4o` answers, `flaky` fails (500) and falls back to `gpt-4o`.
fn traced_gateway(mock_url: &str, endpoint: &str, protocol: &str) -> Gateway {
    let dep = |name: &str, model: &str| {
        Deployment::openai(name, model, mock_url)
            .api_key(UPSTREAM_KEY)
            .prices(0.000_976_562_5, 0.001_953_125)
    };
    let cfg = Config::new()
        .master_key(MASTER)
        .deployment(dep("gpt-4o", "mock-gpt"))
        .deployment(dep("flaky", "mock-error-500"))
        .router_setting("num_retries", 0)
        .router_setting("allowed_fails", 100)
        .router_setting("fallbacks", json!([{"flaky": ["gpt-4o"]}]))
        .yaml();
    Gateway::start_spec(Spec {
        config: &cfg,
        env: &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_SERVICE_NAME", "llmgate-e2e"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
        ..Spec::default()
    })
}

/// A client `traceparent`: trace id `[n; 16]`, parent span id `[n + 1; 8]`.
fn client_trace(n: u8) -> ([u8; 16], [u8; 8], String) {
    let (t, p) = ([n; 16], [n + 1; 8]);
    let header = format!("00-{}-{}-01", hex::encode(t), hex::encode(p));
    (t, p, header)
}

/// `(prompt, completion)` tokens of an answer: a JSON body, or a stream's usage chunk.
fn usage_of(text: &str) -> (i64, i64) {
    let usage = serde_json::from_str::<Value>(text)
        .ok()
        .map(|v| v["usage"].clone())
        .or_else(|| {
            text.lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .map(|v| v["usage"].clone())
                .rfind(|u| u.is_object())
        })
        .unwrap();
    (
        usage["prompt_tokens"].as_i64().unwrap(),
        usage["completion_tokens"].as_i64().unwrap(),
    )
}

/// The span id the upstream got in `traceparent` for each of its requests in `trace`.
fn upstream_span_ids(m: &llmgate_mock::MockServer, trace: &[u8; 16]) -> Vec<Vec<u8>> {
    let prefix = format!("00-{}-", hex::encode(trace));
    m.requests()
        .iter()
        .filter_map(|r| {
            let (_, v) = r.headers.iter().find(|(k, _)| k == "traceparent")?;
            let rest = v.strip_prefix(&prefix)?;
            assert!(rest.ends_with("-01"), "{v}");
            Some(hex::decode(&rest[..16]).unwrap())
        })
        .collect()
}

/// Send three traced requests (whole, streamed, with a fallback) and check what the receiver
/// and the upstream got.
async fn traces_reach_the_receiver(protocol: &str) {
    let got = Received::default();
    let endpoint = match protocol {
        "grpc" => grpc_receiver(got.clone()).await,
        _ => http_receiver(got.clone()).await,
    };
    let m = keyed_mock().await;
    let gw = traced_gateway(&m.url(), &endpoint, protocol);
    let (key, _) = generate(&gw, MASTER, json!({"key_alias": "otel-bot"})).await;
    let c = crate::support::client();
    let cases = [
        ("gpt-4o", false, 1usize, 10u8),
        ("gpt-4o", true, 1, 20),
        ("flaky", false, 2, 30),
    ];
    for (model, stream, attempts, n) in cases {
        let (trace, parent, header) = client_trace(n);
        let body = json!({"model": model, "stream": stream,
            "stream_options": {"include_usage": true}, "max_tokens": 8,
            "messages": [{"role": "user", "content": "hello there, tracer"}]});
        let r = send(
            c.post(format!("{}/v1/chat/completions", gw.url))
                .bearer_auth(&key)
                .header("traceparent", &header)
                .header("tracestate", "vendor=abc")
                .json(&body),
        )
        .await;
        assert_eq!(r.status, 200, "{model} stream={stream}: {}", r.text);
        let (prompt, completion) = usage_of(&r.text);

        let (service, t) = trace_of(&got, &trace, attempts).await;
        assert!(service.contains("llmgate-e2e"), "{service}");
        let root = &t.root;
        assert_eq!(root.parent_span_id, parent.to_vec(), "the client's span");
        assert_eq!(root.name, format!("chat {model}"));
        assert_eq!(attr(root, "gen_ai.operation.name"), "chat");
        assert_eq!(attr(root, "gen_ai.request.model"), model);
        assert_eq!(attr(root, "gen_ai.response.model"), "mock-gpt");
        assert_eq!(attr(root, "gen_ai.provider.name"), "openai");
        assert_eq!(attr(root, "gen_ai.usage.input_tokens"), prompt);
        assert_eq!(attr(root, "gen_ai.usage.output_tokens"), completion);
        assert_eq!(attr(root, "http.response.status_code"), 200);
        assert_eq!(attr(root, "metadata.user_api_key_alias"), "otel-bot");
        assert_eq!(attr(root, "llmgate.stream"), stream);
        assert!(attr(root, "llm.cost").as_f64().unwrap() > 0.0);
        assert_eq!(root.trace_state, "vendor=abc");

        // Attempt spans under the request's, in order; the upstream got their ids.
        for a in &t.attempts {
            assert_eq!(a.parent_span_id, root.span_id, "{}", a.name);
            assert_eq!(attr(a, "server.address"), "127.0.0.1");
        }
        let last = t.attempts.last().unwrap();
        assert_eq!(attr(last, "llmgate.model_group"), "gpt-4o");
        assert_eq!(attr(last, "error.type"), Value::Null);
        if attempts == 2 {
            let first = &t.attempts[0];
            assert_eq!(attr(first, "llmgate.model_group"), "flaky");
            assert_eq!(attr(first, "http.response.status_code"), 500);
            assert_eq!(attr(first, "error.type"), "InternalServerError");
            assert_eq!(first.status.as_ref().unwrap().code, 2, "ERROR");
        }
        let attempt_ids: Vec<Vec<u8>> = t.attempts.iter().map(|a| a.span_id.clone()).collect();
        assert_eq!(
            upstream_span_ids(&m, &trace),
            attempt_ids,
            "traceparent upstream"
        );

        // Plugin calls: the policy's route under the request, the provider's under attempts.
        let calls = |name: &str| {
            t.plugins
                .iter()
                .filter(|p| attr(p, "llmgate.plugin.call") == name)
                .collect::<Vec<_>>()
        };
        let route = calls("route");
        assert_eq!(route.len(), 1, "{:?}", t.plugins);
        assert_eq!(route[0].parent_span_id, root.span_id);
        let plans = calls("plan");
        assert_eq!(plans.len(), attempts);
        for (plan, id) in plans.iter().zip(&attempt_ids) {
            assert_eq!(&plan.parent_span_id, id);
            let plugin = attr(plan, "llmgate.plugin");
            assert!(plugin.as_str().unwrap().starts_with("openai@"), "{plugin}");
            assert_eq!(attr(plan, "llmgate.plugin.outcome"), "ok");
        }
        let read = if stream { "stream_start" } else { "parse" };
        assert!(!calls(read).is_empty(), "{read}: {:?}", t.plugins);
    }

    // A request refused before it had a trace context (a wrong key) has its own span.
    let r = send(
        c.post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth("sk-not-a-key-123")
            .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text);
    let mut refused = None;
    for _ in 0..200 {
        refused = got
            .spans()
            .into_iter()
            .map(|(_, s)| s)
            .find(|s| attr(s, "http.response.status_code") == 401);
        if refused.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = refused.expect("a span for the refused request");
    assert_eq!(refused.kind, SpanKind::Server as i32);
    assert_eq!(refused.status.as_ref().unwrap().code, 2, "ERROR");

    // No secret anywhere in what was exported.
    let raw = got.bytes();
    for secret in [UPSTREAM_KEY, MASTER, key.as_str()] {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} exported"
        );
    }
}

#[tokio::test]
async fn traces_are_exported_over_otlp_http_protobuf() {
    traces_reach_the_receiver("http/protobuf").await;
}

#[tokio::test]
async fn traces_are_exported_over_otlp_grpc() {
    traces_reach_the_receiver("grpc").await;
}

/// Without tracing, the client's `traceparent` still reaches the upstream unchanged, and a
/// malformed one is ignored (the request is served, nothing is forwarded).
#[tokio::test]
async fn traceparent_passes_through_untraced_and_malformed_is_ignored() {
    let m = keyed_mock().await;
    let cfg = Config::new()
        .deployment(Deployment::openai("gpt-4o", "mock-gpt", &m.url()).api_key(UPSTREAM_KEY))
        .yaml();
    let gw = Gateway::start(&cfg);
    let c = crate::support::client();
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let (_, _, header) = client_trace(40);
    for tp in [header.as_str(), "00-not-a-trace-01", "garbage"] {
        let r = send(
            c.post(format!("{}/v1/chat/completions", gw.url))
                .header("traceparent", tp)
                .json(&body),
        )
        .await;
        assert_eq!(r.status, 200, "{tp}: {}", r.text);
    }
    let sent: Vec<Option<String>> = m
        .requests()
        .iter()
        .map(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k == "traceparent")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(sent, vec![Some(header.clone()), None, None]);
}

/// `OTEL_TRACES_SAMPLER=parentbased_always_off`: a client's sampled trace is exported, its
/// unsampled one and a request without `traceparent` are not; the upstream gets each
/// decision in the `traceparent` flags.
#[tokio::test]
async fn the_sampler_decides_which_traces_are_exported() {
    let got = Received::default();
    let endpoint = http_receiver(got.clone()).await;
    let m = keyed_mock().await;
    let cfg = Config::new()
        .deployment(Deployment::openai("gpt-4o", "mock-gpt", &m.url()).api_key(UPSTREAM_KEY))
        .yaml();
    let gw = Gateway::start_spec(Spec {
        config: &cfg,
        env: &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_TRACES_SAMPLER", "parentbased_always_off"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
        ..Spec::default()
    });
    let c = crate::support::client();
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let (kept, _, kept_header) = client_trace(50);
    let (dropped, _, sampled_header) = client_trace(60);
    let dropped_header = sampled_header.replace("-01", "-00");
    for tp in [
        Some(kept_header.as_str()),
        Some(dropped_header.as_str()),
        None,
    ] {
        let mut req = c.post(format!("{}/v1/chat/completions", gw.url));
        if let Some(tp) = tp {
            req = req.header("traceparent", tp);
        }
        let r = send(req.json(&body)).await;
        assert_eq!(r.status, 200, "{tp:?}: {}", r.text);
    }
    let (_, trace) = trace_of(&got, &kept, 1).await;
    assert!(
        !trace.plugins.is_empty(),
        "a sampled trace has its plugin spans"
    );
    // Give the exporter as long again to send anything else it would have.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let traces: std::collections::BTreeSet<String> = got
        .spans()
        .iter()
        .map(|(_, s)| hex::encode(&s.trace_id))
        .collect();
    assert_eq!(
        traces.into_iter().collect::<Vec<_>>(),
        vec![hex::encode(kept)],
        "only the client's sampled trace is exported"
    );
    let flags: Vec<(String, String)> = m
        .requests()
        .iter()
        .filter_map(|r| {
            let (_, v) = r.headers.iter().find(|(k, _)| k == "traceparent")?;
            Some((v[3..35].to_string(), v[53..].to_string()))
        })
        .collect();
    assert_eq!(
        flags.len(),
        3,
        "every attempt carries a traceparent: {flags:?}"
    );
    assert_eq!(flags[0], (hex::encode(kept), "01".to_string()));
    assert_eq!(flags[1], (hex::encode(dropped), "00".to_string()));
    assert_eq!(flags[2].1, "00", "a new trace the sampler dropped");
    assert_ne!(flags[2].0, hex::encode(dropped));
}
