//! # llmgate
//!
//! An LLM gateway: one OpenAI-compatible (and Anthropic-compatible) HTTP API over many
//! model providers. Provider adapters and routing policies are sandboxed WASM components
//! (the `llmgate:plugin` WIT package in `wit/`); the host owns HTTP, authentication,
//! secrets, limits and the outbound connections.
//!
//! A request's path:
//! 1. [`server`]: axum routes; the handler reads the body (bounded) and calls the gateway.
//! 2. [`gateway`]: scans the JSON body for the few fields it needs (`model`, `stream`,
//!    `max_tokens`) without parsing it, resolves the model group (exact, wildcard,
//!    catch-all), and asks the group's routing policy plugin for a plan of attempts.
//! 3. Per attempt, the provider plugin ([`plugins::provider`]) plans the upstream request;
//!    the host checks its origin, applies the secret, sends it on a pooled client, and hands
//!    the answer (whole, or event by event for streams) back to the plugin to translate.
//! 4. A failed attempt falls over to the next one the plan allows, until a byte has been
//!    sent to the client. Errors are rendered once, in the client API's shape ([`error`]).
//!
//! Modules are layered and only point down: leaves ([`net`], [`pricing`], [`wit`],
//! [`models`]) → [`store`], [`shared`] → [`config`], [`error`] → [`ledger`], [`plugins`] →
//! [`gateway`] → [`api`] → [`server`] (which also runs plugin hot reload) → [`db`] (the
//! `llmgate db` subcommands). `ARCHITECTURE.md` has the whole map; `host/tests/layers.rs`
//! fails on an upward import or a cycle.

pub mod api;
pub mod config;
pub mod db;
pub mod error;
pub mod gateway;
pub mod ledger;
pub mod models;
pub mod net;
pub mod observe;
pub mod plugins;
pub mod pricing;
pub mod server;
pub mod shared;
pub mod store;
pub mod wit;

#[doc(hidden)]
pub mod fuzzing {
    //! Entry points for the fuzz targets in `fuzz/`: the parsers of untrusted bytes that are
    //! not public otherwise. Not a stable API.
    pub use crate::gateway::summary::{Summary, last_user_text, summarize};
    pub use crate::wit::types::{Api, Framing};

    /// What a framer made of a stream: its events (name, data), then the error text if
    /// framing failed.
    pub type Framed = (Vec<(Option<String>, String)>, Option<String>);

    /// Feed `chunks` in order to a fresh framer for `framing` and collect every event, up to
    /// the first error.
    pub fn frame_chunks(framing: Framing, chunks: &[&[u8]]) -> Framed {
        let mut f = crate::gateway::sse::Framer::new(framing);
        let mut out = Vec::new();
        for chunk in chunks {
            f.push(chunk);
            loop {
                match f.next_event() {
                    Ok(Some(ev)) => out.push((ev.event, ev.data)),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e.0)),
                }
            }
        }
        match f.finish() {
            Ok(Some(ev)) => out.push((ev.event, ev.data)),
            Ok(None) => {}
            Err(e) => return (out, Some(e.0)),
        }
        (out, None)
    }
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

/// What `llmgate` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--model`, `--alias`, `--api_base`, `--plugins-dir`.
    pub overrides: config::Overrides,
    /// `--host`.
    pub host: String,
    /// `--port` (0 picks a free port).
    pub port: u16,
    /// Event loops serving requests, each on a thread of its own (`--num_workers`, 1 or
    /// more). The caller's runtime is the first; see [`run`].
    pub event_loops: usize,
}

/// Load everything and build the gateway (no listening yet).
pub async fn build(opts: &RunOptions) -> anyhow::Result<Arc<gateway::Gateway>> {
    let config = config::load(opts.config.as_deref(), &opts.overrides)?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let runtime = Arc::new(plugins::Runtime::new(
        &config.plugin_limits,
        config.plugin_cache_dir.as_deref(),
    )?);
    let registry = runtime.load_dir(&config.plugins_dir).await.with_context(|| {
        format!(
            "loading plugins from {} (build them with scripts/build-plugins.sh, or set --plugins-dir)",
            config.plugins_dir.display()
        )
    })?;
    for d in &config.deployments {
        if registry.provider(&d.provider).is_none() {
            tracing::warn!(
                deployment = %d.id,
                "no provider plugin serves `{}/`; requests to it will fail (loaded: {})",
                d.provider,
                registry.prefixes().join(", ")
            );
        }
    }
    if config.deployments.is_empty() {
        tracing::warn!("no models configured: pass --model provider/model or --config config.yaml");
    }
    let store = match &config.postgres {
        Some(pg) => store::Store::open_postgres(&pg.url, pg.wait).await?,
        None => store::Store::open(&config.database_path).with_context(|| {
            format!(
                "opening the database {} (set llmgate.database_path or general_settings.database_url)",
                config.database_path.display()
            )
        })?,
    };
    // The one line that says where keys and spend live (PostgreSQL: its URL without the
    // password).
    match &config.postgres {
        Some(pg) => tracing::info!(postgresql = %pg.url, "database"),
        None => tracing::info!(sqlite = %config.database_path.display(), "database"),
    }
    let settings = ledger::Settings {
        master_key_hash: config.master_key.as_ref().map(|k| {
            use sha2::Digest as _;
            sha2::Sha256::digest(k.expose().as_bytes()).into()
        }),
        admission: config.budget_admission,
        spend_logs: config.spend_logs,
        store_prompts: config.store_prompts,
        lease_ttl: config
            .postgres
            .as_ref()
            .map_or(std::time::Duration::from_secs(10), |pg| pg.lease_ttl),
    };
    if settings.master_key_hash.is_none() {
        tracing::warn!(
            "no master key (general_settings.master_key or LITELLM_MASTER_KEY): authentication is off, every route is open"
        );
    }
    let ledger = ledger::Ledger::open(store, settings).await?;
    if let Some(pg) = &config.postgres {
        // Keys changed on other instances reach this ledger (LISTEN/NOTIFY + resync).
        ledger
            .store()
            .listen_keys(ledger.clone(), pg.key_resync)
            .context("starting the key change listener")?;
    }
    if config.access_log {
        ledger.observer().add(Arc::new(observe::access::AccessLog));
    }
    let alerter = observe::alerts::Alerter::start(&config.alerting)?;
    if let Some(a) = &alerter {
        ledger.observer().add(a.clone());
    }
    if let Some(otel) =
        observe::otel::Settings::from_env(config.callbacks.iter().any(|c| c == "otel"))
    {
        let sink =
            observe::otel::Otel::install(&otel).context("starting the OTLP trace exporter")?;
        ledger.observer().add(sink);
        tracing::info!(
            protocol = if otel.grpc { "grpc" } else { "http/protobuf" },
            "exporting traces over OTLP"
        );
    }
    let metrics = config.metrics;
    let redis = config.redis.clone();
    let gw = Arc::new(gateway::Gateway::new(
        config,
        registry,
        runtime,
        ledger,
        opts.event_loops.max(1),
    )?);
    if metrics {
        gw.set_metrics(Arc::new(observe::metrics::Metrics::new()?));
        tracing::info!("Prometheus metrics at /metrics");
    }
    if let Some(a) = alerter {
        server::alerts::watch(&gw, a);
    }
    if let Some(target) = redis {
        tracing::info!(redis = %target.shown(), "sharing cooldowns and rpm/tpm windows through Redis");
        gw.set_shared(Arc::new(shared::Shared::start(target)?));
    }
    Ok(gw)
}

/// Run the gateway until SIGINT/SIGTERM, then drain requests in flight; SIGHUP reloads the
/// config ([`server::config_reload`]).
///
/// The caller's runtime is the first event loop. With `event_loops` N > 1, N − 1 more threads
/// each run a single-threaded runtime of their own (as LiteLLM's `--num_workers` runs one
/// event loop per worker). An acceptor on the first loop hands each new connection to the
/// loop with the fewest open ones ([`server::loops`]). A connection stays on its loop,
/// and each loop has its own upstream connection pool ([`gateway::Gateway`]), so a request
/// is served start to end on one thread: no task hops between threads, no wake-up of a
/// second thread on its path.
pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let fd_limit = server::raise_fd_limit();
    let gw = build(&opts).await?;
    // SIGHUP reloads the config from here on (it no longer ends the process).
    let _config_reload = server::config_reload::start(
        gw.clone(),
        server::config_reload::Source {
            path: opts.config.clone(),
            overrides: opts.overrides.clone(),
        },
    )?;
    let listener = bind(&opts).await?;
    let local = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let event_loops = opts.event_loops.max(1);
    // An acceptor on this loop hands each connection to the least busy loop (this one too).
    let limits = gw.config().client;
    let max_connections = limits
        .max_connections
        .unwrap_or_else(|| server::default_max_connections(fd_limit));
    tracing::info!(
        max_connections,
        fd_limit,
        header_timeout_s = limits.header_read_timeout.as_secs_f64(),
        idle_timeout_s = limits.idle_timeout.as_secs_f64(),
        body_timeout_s = limits.body_read_timeout.as_secs_f64(),
        "client connection limits"
    );
    let (acceptor, mut loops) = server::loops::split(listener, event_loops, max_connections)?;
    gw.set_loop_connections(acceptor.open_connections());
    tokio::spawn(acceptor.run(stop_rx.clone()));
    let first = loops.remove(0);
    let threads = (1..)
        .zip(loops)
        .map(|(index, handoff)| spawn_loop(index, gw.clone(), handoff, stop_rx.clone(), limits))
        .collect::<anyhow::Result<Vec<_>>>()?;
    tracing::info!(%local, event_loops, "llmgate listening");
    // The one line on stdout: tests and scripts read the address from it.
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, "llmgate listening on http://{local}")?;
        out.flush()?;
    }
    let _watch = gw
        .config()
        .hot_reload
        .then(|| server::reload::watch(gw.clone()));
    let _health_checks = gateway::probe::background(gw.clone());
    let _lease_upkeep = gw.ledger().lease_upkeep();
    let first = serve(gw.clone(), first, stop_rx, limits);
    // Every loop's server; the first to end (an error, or all of them after a stop) ends it.
    let all = async move {
        let mut result = first.await;
        for done in threads {
            let r = done
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("an event loop thread died")));
            result = result.and(r);
        }
        result
    };
    let mut server = std::pin::pin!(all);
    tokio::select! {
        r = &mut server => {
            let _ = gw.ledger().store().close().await;
            return r.context("serving");
        }
        () = shutdown_signal() => {}
    }
    drain(&gw, &stop_tx, server).await
}

/// The listening socket of `--host` and `--port`.
async fn bind(opts: &RunOptions) -> anyhow::Result<tokio::net::TcpListener> {
    let addr: SocketAddr = tokio::net::lookup_host((opts.host.as_str(), opts.port))
        .await
        .with_context(|| format!("resolving --host {}", opts.host))?
        .next()
        .with_context(|| format!("--host {} resolves to no address", opts.host))?;
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

/// Event loop `index` on a thread of its own, serving the connections handed to it; the
/// receiver answers when it has stopped.
fn spawn_loop(
    index: usize,
    gw: Arc<gateway::Gateway>,
    handoff: server::loops::Handoff,
    stop: tokio::sync::watch::Receiver<bool>,
    limits: config::ClientLimits,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<anyhow::Result<()>>> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("llmgate-loop-{index}"))
        .spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting an event loop")
                .and_then(|rt| {
                    rt.block_on(async move {
                        gateway::set_event_loop(index);
                        serve(gw, handoff, stop, limits).await
                    })
                });
            if let Err(e) = &served {
                tracing::error!("event loop {index} stopped: {e:#}");
            }
            let _ = done_tx.send(served);
        })
        .context("starting an event loop thread")?;
    Ok(done_rx)
}

/// After a shutdown signal: stop accepting, give requests in flight the grace period, and
/// commit every queued spend record before the process exits.
async fn drain(
    gw: &gateway::Gateway,
    stop: &tokio::sync::watch::Sender<bool>,
    server: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let grace = gw.config().shutdown_grace;
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: draining requests in flight"
    );
    let _ = stop.send(true);
    let served = match tokio::time::timeout(grace, server).await {
        Ok(r) => r.context("serving"),
        Err(_) => {
            tracing::warn!("requests still in flight after the grace period; closing");
            Ok(())
        }
    };
    gw.ledger().release_leases().await;
    if let Err(e) = gw.ledger().store().close().await {
        tracing::error!("flushing the store on shutdown failed: {e:#}");
    }
    observe::otel::Otel::shutdown().await;
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// Serve HTTP on the connections handed to this loop until `stop` turns true, then finish
/// the requests in flight.
async fn serve(
    gw: Arc<gateway::Gateway>,
    connections: server::loops::Handoff,
    stop: tokio::sync::watch::Receiver<bool>,
    limits: config::ClientLimits,
) -> anyhow::Result<()> {
    server::conn::serve(server::app(gw), connections, stop, limits).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
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
