//! `llmgate-mock`: run the mock provider upstreams (OpenAI, Anthropic, Gemini, Bedrock, Azure
//! OpenAI, images) as a standalone server.

use std::io::Write;
use std::sync::Arc;

use clap::Parser;
use llmgate_mock::{MockOptions, MockState, router};

/// Mock LLM provider upstreams (OpenAI, Anthropic, Gemini, Bedrock, Azure OpenAI, images),
/// each speaking its provider's wire format.
#[derive(Debug, Parser)]
#[command(name = "llmgate-mock", version, about)]
struct Args {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Require KEY on every request, in each provider's way (`Authorization: Bearer KEY`,
    /// `x-api-key`, `x-goog-api-key`, `api-key`, SigV4 `Credential=KEY/...`).
    #[arg(long, value_name = "KEY")]
    require_key: Option<String>,
    /// Fixed delay in milliseconds added to every answer.
    #[arg(long, value_name = "N", default_value_t = 0)]
    latency_ms: u64,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(MockState::new(MockOptions {
        require_key: args.require_key,
        latency_ms: args.latency_ms,
    }));
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "llmgate-mock listening on http://{addr}")?;
        out.flush()?;
    }
    tokio::select! {
        res = axum::serve(axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        }), router(state)) => res,
        () = shutdown_signal() => Ok(()),
    }
}

/// Resolves on SIGINT or (on Unix) SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
