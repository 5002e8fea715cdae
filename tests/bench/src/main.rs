//! `llmgate-bench`: measure the overhead llmgate adds to chat-completion requests.
//!
//! Starts the mock upstream (`llmgate-mock`) and the gateway (`llmgate`, configured with one
//! model group `bench` pointing at the mock), then sends each workload both straight to the
//! mock ("direct") and through the gateway ("via"): a fixed-rate open-loop phase for latency
//! percentiles and a closed-loop phase for saturation throughput. CPU time of every process
//! is read from `/proc` around each phase, so the gateway's CPU cost per request is reported
//! too; on a small shared machine that is the most robust overhead figure.
//!
//! A third target, "bare", is a reverse proxy with no logic at all (see [`bare`]) in
//! front of the same mock: the cost of a second HTTP hop on this machine, so what the
//! gateway adds beyond any proxy can be read off ("vs bare").
//!
//! The gateway's store is a fresh SQLite file by default; `--database-url` puts it on
//! PostgreSQL and `--redis-url` adds the shared Redis. `--restart-postgres CMD` runs the
//! fault run of [`fault`] instead of the workloads.
//!
//! Exits non-zero if more than 0.1% of the requests of any phase fail.

mod admin;
mod bare;
mod collector;
mod fault;
mod instructions;
mod load;
mod procs;
mod report;
mod workload;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::BodyExt as _;
use hyper::Uri;

use admin::{BenchKey, KeyMode};
use load::{HttpClient, Target};
use procs::ChildGuard;
use report::{
    CpuSnapshot, Errors, FixedRate, Machine, Memory, Pair, Percentiles, Report, Saturation,
    Settings, WorkloadResult,
};
use workload::Workload;

/// Largest tolerated share of failed requests in a phase.
const MAX_ERROR_RATE: f64 = 0.001;
/// How long the gateway may take to print its listening line.
const GATEWAY_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the mock may take to print its listening line.
const MOCK_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Quiet time between phases.
const SETTLE: Duration = Duration::from_millis(300);
/// Note printed with every result.
const SHARED_NOTE: &str = "the load generator, the mock upstream and the gateway share this machine, so absolute latencies include contention";

/// Benchmark llmgate's added latency, CPU and memory against a mock OpenAI upstream.
#[derive(Debug, Parser)]
#[command(name = "llmgate-bench", version, about, args_override_self = true)]
struct Args {
    /// Fixed-rate phase: requests per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Seconds per phase and target.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Saturation phase: concurrent requests.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Warm-up seconds per workload and target before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Workloads to run (comma-separated).
    #[arg(long = "workload", value_enum, value_delimiter = ',', default_values_t = Workload::ALL)]
    workloads: Vec<Workload>,
    /// Skip the saturation (closed-loop) phase.
    #[arg(long)]
    skip_saturation: bool,
    /// Load-generator runtime threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// The llmgate binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    llmgate_bin: Option<PathBuf>,
    /// The llmgate-mock binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    mock_bin: Option<PathBuf>,
    /// Extra command-line argument for the gateway (repeatable), e.g. `--gateway-arg=--num_workers=1`.
    #[arg(long = "gateway-arg", value_name = "ARG", allow_hyphen_values = true)]
    gateway_args: Vec<String>,
    /// Keys and budgets on: the gateway gets a master key, and every request goes with a
    /// virtual key that has a budget, a budget window and rpm/tpm/parallel limits (all
    /// far above the load), so each request is authenticated, admitted, reserved, settled
    /// and spend-logged.
    #[arg(long, conflicts_with = "virtual_key")]
    keys: bool,
    /// Every request goes with a virtual key made by `/key/generate` at start that has a
    /// `max_budget` (never reached), plus an `rpm_limit` (never reached) when `--redis-url`
    /// is given, so the shared Redis window counts every request. The gateway gets a
    /// master key.
    #[arg(long)]
    virtual_key: bool,
    /// The gateway's store on PostgreSQL (`general_settings.database_url`), e.g.
    /// `postgresql://postgres@127.0.0.1:55531/bench`; default a fresh SQLite file.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// The shared Redis (`router_settings.redis_url`), e.g. `redis://127.0.0.1:55532`.
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// Fault run instead of the workloads: the first workload at `--rate` for `--seconds`
    /// through the gateway on `--database-url` (a virtual key, as `--virtual-key` unless
    /// `--keys`), this shell command run `--restart-at` seconds in (e.g. `pg_ctl -D DIR
    /// -m fast -w restart`); prints the answers per second, the longest time without a
    /// 200, and whether every 200 has its spend log row and the key's spend its rows' sum.
    #[arg(
        long,
        value_name = "CMD",
        requires = "database_url",
        conflicts_with = "callgrind"
    )]
    restart_postgres: Option<String>,
    /// Seconds into the fault run when `--restart-postgres` runs (default a third of
    /// `--seconds`).
    #[arg(long, value_name = "SECONDS", requires = "restart_postgres")]
    restart_at: Option<f64>,
    /// Observability on: `metrics` (`litellm_settings.callbacks: [prometheus]`), `traces`
    /// (`[otel]`, exported over OTLP/HTTP to a stand-in collector in this process) or `all`
    /// (both; `--observe` alone).
    #[arg(long, value_enum, num_args = 0..=1, default_value_t = Observe::Off, default_missing_value = "all")]
    observe: Observe,
    /// Count instructions instead of timing: run the gateway under valgrind's callgrind,
    /// send this many requests of each workload one after another (after a warm-up), and
    /// print the instructions the gateway process executed per request (all threads, the
    /// trace export included). Deterministic where the timings wander.
    #[arg(long, value_name = "REQUESTS")]
    callgrind: Option<u64>,
    /// Plugin folder for the gateway (default: the workspace's plugins/dist).
    #[arg(long, value_name = "DIR")]
    plugins_dir: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Do not measure the bare reference proxy.
    #[arg(long)]
    no_bare_proxy: bool,
    /// Internal: run as the bare reference proxy in front of this upstream URL.
    #[arg(long, hide = true, value_name = "URL")]
    bare_proxy_child: Option<String>,
}

impl Args {
    /// Which virtual key the requests go with.
    fn key_mode(&self) -> KeyMode {
        if self.keys {
            KeyMode::Limits
        } else if self.virtual_key || self.restart_postgres.is_some() {
            KeyMode::Budget
        } else {
            KeyMode::None
        }
    }

    /// The store and shared state the gateway runs on, as reported.
    fn store(&self) -> &'static str {
        match (&self.database_url, &self.redis_url) {
            (None, None) => "sqlite",
            (None, Some(_)) => "sqlite + redis",
            (Some(_), None) => "postgresql",
            (Some(_), Some(_)) => "postgresql + redis",
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(upstream) = &args.bare_proxy_child {
        return match bare::run(upstream) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("llmgate-bench bare proxy: error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let threads = args
        .threads
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run(args, threads)),
        Err(e) => Err(anyhow::Error::new(e).context("starting the tokio runtime")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("llmgate-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The folder holding this executable.
fn exe_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("this executable has no parent folder")
}

/// `--X-bin`, or `name` next to this executable; it must exist.
fn binary(given: Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => exe_dir()?.join(name),
    };
    if !path.is_file() {
        bail!(
            "{} not found; build it (cargo build --release -p llmgate -p llmgate-mock) or pass --{}-bin",
            path.display(),
            if name == "llmgate" { "llmgate" } else { "mock" }
        );
    }
    Ok(path)
}

/// `--plugins-dir`, or the first `plugins/dist` above this executable, in this crate's
/// workspace, or in the current folder.
fn plugins_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = given {
        return Ok(dir);
    }
    let mut candidates: Vec<PathBuf> = exe_dir()?
        .ancestors()
        .map(|a| a.join("plugins").join("dist"))
        .collect();
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/dist"));
    candidates.push(PathBuf::from("plugins/dist"));
    candidates
        .into_iter()
        .find(|c| c.join("openai.wasm").is_file())
        .context(
            "no plugins/dist/openai.wasm found; run scripts/build-plugins.sh or pass --plugins-dir",
        )
}

/// Everything a phase needs.
struct Ctx {
    client: HttpClient,
    gateway_pid: u32,
    mock_pid: u32,
    bare_pid: Option<u32>,
    ticks_per_s: u64,
}

impl Ctx {
    fn cpu(&self) -> anyhow::Result<CpuSnapshot> {
        Ok(CpuSnapshot {
            gateway: procs::cpu_ticks(self.gateway_pid)?,
            mock: procs::cpu_ticks(self.mock_pid)?,
            bare: self
                .bare_pid
                .map(procs::cpu_ticks)
                .transpose()?
                .unwrap_or(0),
            loadgen: procs::cpu_ticks(std::process::id())?,
        })
    }
}

/// Run the whole benchmark; `Ok(false)` if too many requests failed.
async fn run(args: Args, threads: usize) -> anyhow::Result<bool> {
    if !(args.rate > 0.0 && args.seconds > 0.0 && args.warmup >= 0.0) {
        bail!("--rate and --seconds must be positive, --warmup not negative");
    }
    let llmgate_bin = binary(args.llmgate_bin.clone(), "llmgate")?;
    let mock_bin = binary(args.mock_bin.clone(), "llmgate-mock")?;
    let plugins = plugins_dir(args.plugins_dir.clone())?;

    // Mock upstream.
    let mut cmd = Command::new(&mock_bin);
    cmd.args(["--host", "127.0.0.1", "--port", "0"]);
    let (mut mock, mock_url) = procs::spawn_listening(
        "llmgate-mock",
        cmd,
        "llmgate-mock listening on ",
        MOCK_START_TIMEOUT,
    )?;
    eprintln!("llmgate-bench: mock upstream at {mock_url}");

    // The bare reference proxy: this executable in its proxy role.
    let no_bare = args.no_bare_proxy || args.callgrind.is_some() || args.restart_postgres.is_some();
    let mut bare = if no_bare {
        None
    } else {
        let mut cmd = Command::new(std::env::current_exe().context("locating this executable")?);
        cmd.arg("--bare-proxy-child").arg(&mock_url);
        let (child, url) =
            procs::spawn_listening("bare proxy", cmd, bare::LISTENING, MOCK_START_TIMEOUT)?;
        eprintln!("llmgate-bench: bare reference proxy at {url}");
        Some((child, url))
    };

    // Gateway.
    let tmp = procs::TempDir::new("llmgate-bench")?;
    let mut cmd = gateway_command(&args, &llmgate_bin, &plugins, &mock_url, tmp.path())?;
    if args.observe.traces() {
        let collector = collector::spawn()?;
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
        eprintln!("llmgate-bench: traces on; OTLP collector at {collector}");
    }
    if args.observe.metrics() {
        eprintln!("llmgate-bench: Prometheus metrics on");
    }
    if !args.gateway_args.is_empty() {
        eprintln!(
            "llmgate-bench: gateway arguments: {}",
            args.gateway_args.join(" ")
        );
    }
    eprintln!(
        "llmgate-bench: store {}, key {:?}",
        args.store(),
        args.key_mode()
    );
    let key = BenchKey::fresh();
    if let Some(requests) = args.callgrind {
        return instructions::count(&args, cmd, requests, &key).await;
    }
    let spawned = Instant::now();
    let (mut gateway, gateway_url) = procs::spawn_listening(
        "llmgate",
        cmd,
        "llmgate listening on ",
        GATEWAY_START_TIMEOUT,
    )?;
    let startup = spawned.elapsed();
    let client = load::client();
    let mode = args.key_mode();
    let (auth, token) = if mode.on() {
        let token =
            admin::generate(&client, &gateway_url, &key, mode, args.redis_url.is_some()).await?;
        eprintln!(
            "llmgate-bench: every request uses the virtual key `{}` ({mode:?})",
            key.alias
        );
        (key.auth()?, token)
    } else {
        (load::default_auth(), String::new())
    };
    if let Some(command) = &args.restart_postgres {
        let run = FaultRun {
            client: &client,
            gateway_url: &gateway_url,
            key: &key,
            token: &token,
            auth,
        };
        let judged = run.go(&args, command).await;
        check_alive(&mut mock, &mut gateway, None)?;
        drop(gateway);
        return run.database_books(&args, judged?);
    }
    let idle_rss = procs::status_kb(gateway.pid(), "VmRSS")?;
    eprintln!(
        "llmgate-bench: gateway at {gateway_url} (ready in {:.0} ms, idle RSS {:.1} MiB)",
        startup.as_secs_f64() * 1000.0,
        report::mib(idle_rss)
    );

    let ctx = Ctx {
        client,
        gateway_pid: gateway.pid(),
        mock_pid: mock.pid(),
        bare_pid: bare.as_ref().map(|(child, _)| child.pid()),
        ticks_per_s: procs::clock_ticks_per_second(),
    };
    let mut errors = Errors::default();
    let mut results = Vec::new();
    for &w in &dedup(&args.workloads) {
        let direct = Target {
            uri: endpoint(&mock_url)?,
            body: w.body("mock-gpt")?,
            streamed: w.streamed(),
            auth: load::default_auth(),
        };
        let bare_target = match &bare {
            Some((_, url)) => Some(Target {
                uri: endpoint(url)?,
                body: direct.body.clone(),
                streamed: w.streamed(),
                auth: load::default_auth(),
            }),
            None => None,
        };
        let via = Target {
            uri: format!("{gateway_url}{}", w.via_path())
                .parse()
                .with_context(|| format!("bad URL {gateway_url}"))?,
            body: w.via_body("bench")?,
            streamed: w.streamed(),
            auth: auth.clone(),
        };
        let targets = Targets {
            direct: &direct,
            bare: bare_target.as_ref(),
            via: &via,
        };
        let result = measure_workload(&ctx, &args, w, &targets, &mut errors).await;
        check_alive(
            &mut mock,
            &mut gateway,
            bare.as_mut().map(|(child, _)| child),
        )?;
        results.push(result?);
    }

    let memory = Memory {
        idle_rss_mib: report::mib(idle_rss),
        peak_rss_mib: report::mib(procs::status_kb(gateway.pid(), "VmHWM")?),
        final_rss_mib: report::mib(procs::status_kb(gateway.pid(), "VmRSS")?),
    };
    if args.observe.traces() {
        let (exports, bytes) = collector::received();
        eprintln!("llmgate-bench: the collector received {exports} OTLP exports ({bytes} bytes)");
    }
    drop(gateway);
    drop(bare);
    drop(mock);
    drop(tmp);

    let passed = errors.worst_phase_rate <= MAX_ERROR_RATE;
    let report = Report {
        machine: Machine {
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model: procs::cpu_model(),
            clock_ticks_per_second: ctx.ticks_per_s,
            note: SHARED_NOTE,
        },
        settings: Settings {
            rate: args.rate,
            seconds: args.seconds,
            concurrency: args.concurrency,
            warmup_seconds: args.warmup,
            loadgen_threads: threads,
            store: args.store(),
            key: mode,
        },
        gateway_startup_ms: startup.as_secs_f64() * 1000.0,
        gateway_memory: memory,
        workloads: results,
        errors,
        passed,
    };
    print!("{}", report::table(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("llmgate-bench: wrote {}", path.display());
    }
    if !passed {
        eprintln!(
            "llmgate-bench: FAILED: {:.3}% of the requests of a phase failed (limit {:.1}%)",
            100.0 * errors.worst_phase_rate,
            100.0 * MAX_ERROR_RATE
        );
    }
    Ok(passed)
}

/// The fault run's gateway and key (`--restart-postgres`).
struct FaultRun<'a> {
    client: &'a HttpClient,
    gateway_url: &'a str,
    key: &'a BenchKey,
    token: &'a str,
    auth: hyper::header::HeaderValue,
}

impl FaultRun<'_> {
    /// Load with the restart in it: the verdict and the lines to print.
    async fn go(&self, args: &Args, command: &str) -> anyhow::Result<(bool, Vec<String>)> {
        let plan = fault::Plan {
            command: command.to_owned(),
            at: args.restart_at.unwrap_or(args.seconds / 3.0),
            rate: args.rate,
            seconds: args.seconds,
        };
        let w = args.workloads.first().copied().unwrap_or(Workload::Small);
        let via = Target {
            uri: format!("{}{}", self.gateway_url, w.via_path())
                .parse()
                .with_context(|| format!("bad URL {}", self.gateway_url))?,
            body: w.via_body("bench")?,
            streamed: w.streamed(),
            auth: self.auth.clone(),
        };
        fault::run(self.client, self.gateway_url, &via, self.token, &plan).await
    }

    /// After the gateway stopped: the database's own books, then everything printed;
    /// `Ok(false)` when the run or the database failed.
    fn database_books(&self, args: &Args, run: (bool, Vec<String>)) -> anyhow::Result<bool> {
        let (mut judged, mut lines) = run;
        let url = args.database_url.as_deref().unwrap_or_default();
        match fault::database_books(url, &self.key.alias) {
            Ok(Some(line)) => lines.push(line),
            Ok(None) => lines.push("database: psql not installed, not read".into()),
            Err(e) => {
                judged = false;
                lines.push(format!("database: FAIL: {e:#}"));
            }
        }
        println!("{}", lines.join("\n"));
        Ok(judged)
    }
}

/// What `--observe` turns on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Observe {
    /// Nothing.
    Off,
    /// Prometheus metrics.
    Metrics,
    /// OpenTelemetry traces.
    Traces,
    /// Both.
    All,
}

impl Observe {
    fn metrics(self) -> bool {
        matches!(self, Observe::Metrics | Observe::All)
    }

    fn traces(self) -> bool {
        matches!(self, Observe::Traces | Observe::All)
    }

    /// The `litellm_settings.callbacks` list that turns it on.
    fn callbacks(self) -> &'static str {
        match self {
            Observe::Off => "[]",
            Observe::Metrics => "[prometheus]",
            Observe::Traces => "[otel]",
            Observe::All => "[prometheus, otel]",
        }
    }
}

/// The gateway's config: one model group `bench` at the mock, the callbacks `--observe`
/// asks for, prices with a virtual key, the PostgreSQL store and Redis when given, and
/// under callgrind a small plugin instance pool (valgrind cannot reserve the
/// pooling allocator's address space for the default 1,000 instances).
fn gateway_config(args: &Args, mock_url: &str) -> String {
    // With a virtual key the requests cost something, so its spend and the spend log rows
    // have sums to compare (and the reservation a price to reserve).
    let prices = if args.key_mode().on() {
        "      input_cost_per_token: 0.000001\n      output_cost_per_token: 0.000002\n"
    } else {
        ""
    };
    let mut config = format!(
        "model_list:\n  - model_name: bench\n    litellm_params:\n      model: openai/mock-gpt\n      api_base: {mock_url}/v1\n      api_key: sk-bench\n{prices}litellm_settings:\n  callbacks: {}\n",
        args.observe.callbacks()
    );
    if args.callgrind.is_some() {
        config.push_str("llmgate:\n  plugin_limits: {max_instances: 4}\n");
    }
    if let Some(url) = &args.database_url {
        config.push_str(&format!("general_settings:\n  database_url: {url:?}\n"));
    }
    if let Some(url) = &args.redis_url {
        config.push_str(&format!("router_settings:\n  redis_url: {url:?}\n"));
    }
    config
}

/// The gateway's command: config and database in `dir`, plugins from `plugins`, no OTLP
/// endpoint inherited from this environment.
fn gateway_command(
    args: &Args,
    llmgate_bin: &Path,
    plugins: &Path,
    mock_url: &str,
    dir: &Path,
) -> anyhow::Result<Command> {
    let config = dir.join("config.yaml");
    std::fs::write(&config, gateway_config(args, mock_url))
        .with_context(|| format!("writing {}", config.display()))?;
    let mut cmd = Command::new(llmgate_bin);
    cmd.args(["--host", "127.0.0.1", "--port", "0", "--plugins-dir"])
        .arg(plugins)
        .arg("--config")
        .arg(&config)
        .args(&args.gateway_args)
        .env("LLMGATE_LOG", "warn")
        .env("LLMGATE_DB", dir.join("llmgate.db"))
        .env_remove("DATABASE_URL")
        .env_remove("LITELLM_MASTER_KEY")
        .env_remove("LLMGATE_MASTER_KEY");
    if args.key_mode().on() {
        cmd.env("LLMGATE_MASTER_KEY", admin::MASTER_KEY);
    }
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER",
        "OTEL_ENDPOINT",
    ] {
        cmd.env_remove(var);
    }
    Ok(cmd)
}

/// The workloads in the order given, each once.
fn dedup(workloads: &[Workload]) -> Vec<Workload> {
    let mut out: Vec<Workload> = Vec::new();
    for &w in workloads {
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// `BASE/v1/chat/completions` as a URI.
fn endpoint(base: &str) -> anyhow::Result<Uri> {
    format!("{base}/v1/chat/completions")
        .parse()
        .with_context(|| format!("bad URL {base}"))
}

/// Fail if any child has exited.
fn check_alive(
    mock: &mut ChildGuard,
    gateway: &mut ChildGuard,
    bare: Option<&mut ChildGuard>,
) -> anyhow::Result<()> {
    if let Some(status) = bare.and_then(ChildGuard::exited) {
        bail!("the bare proxy exited during the run: {status}");
    }
    if let Some(status) = gateway.exited() {
        bail!("the gateway exited during the run: {status}");
    }
    if let Some(status) = mock.exited() {
        bail!("the mock upstream exited during the run: {status}");
    }
    Ok(())
}

/// Send one request, check the answer is a proper completion (or stream), return its size.
async fn preflight(client: &HttpClient, target: &Target, label: &str) -> anyhow::Result<usize> {
    let resp = client
        .request(load::request(target))
        .await
        .with_context(|| format!("{label}: sending to {}", target.uri))?;
    let status = resp.status();
    let body: Bytes = resp
        .into_body()
        .collect()
        .await
        .with_context(|| format!("{label}: reading the answer"))?
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    if !status.is_success() {
        bail!("{label}: {} answered {status}: {text}", target.uri);
    }
    let fine = if target.streamed {
        text.contains("\"chat.completion.chunk\"") && text.trim_end().ends_with("data: [DONE]")
    } else {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.pointer("/choices/0/message/content")
                    .or_else(|| v.pointer("/content/0/text"))?
                    .as_str()
                    .map(|c| c.starts_with("echo:"))
            })
            .unwrap_or(false)
    };
    if !fine {
        bail!("{label}: unexpected answer from {}: {text}", target.uri);
    }
    Ok(body.len())
}

/// The targets one workload is sent to.
struct Targets<'a> {
    direct: &'a Target,
    bare: Option<&'a Target>,
    via: &'a Target,
}

/// Warm up, then run the fixed-rate and saturation phases against every target.
async fn measure_workload(
    ctx: &Ctx,
    args: &Args,
    w: Workload,
    targets: &Targets<'_>,
    errors: &mut Errors,
) -> anyhow::Result<WorkloadResult> {
    let Targets { direct, bare, via } = *targets;
    let name = w.name();
    let bytes_direct = preflight(&ctx.client, direct, &format!("{name} direct")).await?;
    if let Some(b) = bare {
        preflight(&ctx.client, b, &format!("{name} bare")).await?;
    }
    let bytes_via = preflight(&ctx.client, via, &format!("{name} via")).await?;
    eprintln!(
        "llmgate-bench: {name}: request {} B, response {bytes_direct} B direct / {bytes_via} B via",
        via.body.len()
    );

    if args.warmup > 0.0 {
        for target in [Some(direct), bare, Some(via)].into_iter().flatten() {
            let warm = load::closed_loop(&ctx.client, target, args.concurrency.min(4), args.warmup)
                .await?;
            errors.warmup_failed += warm.errors;
        }
    }

    eprintln!(
        "llmgate-bench: {name}: fixed rate {} req/s, {} s per target",
        args.rate, args.seconds
    );
    let fixed_direct = fixed_rate(ctx, args, direct, errors).await?;
    let fixed_bare = match bare {
        Some(b) => Some(fixed_rate(ctx, args, b, errors).await?),
        None => None,
    };
    let fixed_via = fixed_rate(ctx, args, via, errors).await?;

    let saturation = if args.skip_saturation {
        None
    } else {
        eprintln!(
            "llmgate-bench: {name}: saturation, {} concurrent, {} s per target",
            args.concurrency, args.seconds
        );
        let direct = saturation(ctx, args, direct, errors).await?;
        let bare = match bare {
            Some(b) => Some(saturation(ctx, args, b, errors).await?),
            None => None,
        };
        Some(Pair {
            direct,
            bare,
            via: saturation(ctx, args, via, errors).await?,
        })
    };

    let diff = |a: u64, b: u64| b as i64 - a as i64;
    Ok(WorkloadResult {
        name,
        streamed: w.streamed(),
        request_bytes: Pair {
            direct: direct.body.len(),
            bare: bare.map(|b| b.body.len()),
            via: via.body.len(),
        },
        added_p50_us: diff(fixed_direct.latency.p50_us, fixed_via.latency.p50_us),
        added_p99_us: diff(fixed_direct.latency.p99_us, fixed_via.latency.p99_us),
        added_ttfb_p50_us: diff(fixed_direct.ttfb.p50_us, fixed_via.ttfb.p50_us),
        bare_hop_p50_us: fixed_bare
            .as_ref()
            .map(|b| diff(fixed_direct.latency.p50_us, b.latency.p50_us)),
        over_bare_p50_us: fixed_bare
            .as_ref()
            .map(|b| diff(b.latency.p50_us, fixed_via.latency.p50_us)),
        over_bare_p99_us: fixed_bare
            .as_ref()
            .map(|b| diff(b.latency.p99_us, fixed_via.latency.p99_us)),
        fixed_rate: Pair {
            direct: fixed_direct,
            bare: fixed_bare,
            via: fixed_via,
        },
        saturation,
    })
}

/// Record a phase's error count.
fn count_errors(errors: &mut Errors, requests: u64, failed: u64) {
    errors.requests += requests;
    errors.failed += failed;
    if requests > 0 {
        errors.worst_phase_rate = errors.worst_phase_rate.max(failed as f64 / requests as f64);
    } else {
        errors.worst_phase_rate = 1.0;
    }
}

/// One open-loop phase against one target.
async fn fixed_rate(
    ctx: &Ctx,
    args: &Args,
    target: &Target,
    errors: &mut Errors,
) -> anyhow::Result<FixedRate> {
    tokio::time::sleep(SETTLE).await;
    let before = ctx.cpu()?;
    let samples = load::open_loop(&ctx.client, target, args.rate, args.seconds).await?;
    let after = ctx.cpu()?;

    let n = samples.len();
    let (mut latency, mut service, mut ttfb, mut lag) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut failed = 0u64;
    let mut response_bytes = 0;
    for s in &samples {
        let o = &s.outcome;
        lag.push(load::micros(o.started.saturating_duration_since(s.due)));
        if !o.ok {
            failed += 1;
            continue;
        }
        if response_bytes == 0 {
            response_bytes = o.bytes;
        }
        latency.push(load::micros(o.finished.saturating_duration_since(s.due)));
        service.push(load::micros(
            o.finished.saturating_duration_since(o.started),
        ));
        if let Some(first) = o.first_byte {
            ttfb.push(load::micros(first.saturating_duration_since(s.due)));
        }
    }
    if failed > 0 {
        report_failures(target, samples.iter().map(|s| &s.outcome));
    }
    let requests = n as u64;
    count_errors(errors, requests, failed);
    Ok(FixedRate {
        requests,
        errors: failed,
        latency: Percentiles::of(&mut latency),
        service: Percentiles::of(&mut service),
        ttfb: Percentiles::of(&mut ttfb),
        scheduler_lag: Percentiles::of(&mut lag),
        response_bytes,
        cpu: before.per_request(&after, requests, ctx.ticks_per_s),
    })
}

/// One closed-loop phase against one target.
async fn saturation(
    ctx: &Ctx,
    args: &Args,
    target: &Target,
    errors: &mut Errors,
) -> anyhow::Result<Saturation> {
    tokio::time::sleep(SETTLE).await;
    let before = ctx.cpu()?;
    let mut run = load::closed_loop(&ctx.client, target, args.concurrency, args.seconds).await?;
    let after = ctx.cpu()?;
    let requests = run.ok + run.errors;
    if run.errors > 0 {
        eprintln!(
            "llmgate-bench: {} of {requests} saturation requests to {} failed",
            run.errors, target.uri
        );
    }
    count_errors(errors, requests, run.errors);
    Ok(Saturation {
        rps: run.ok as f64 / run.seconds,
        ok: run.ok,
        errors: run.errors,
        latency: Percentiles::of(&mut run.latencies_us),
        // The CPU window also covers the requests that finished after the deadline.
        cpu: before.per_request(&after, requests + run.late, ctx.ticks_per_s),
    })
}

/// Print a summary of failed requests: how many per status (0 = no response).
fn report_failures<'a>(target: &Target, outcomes: impl Iterator<Item = &'a load::Outcome>) {
    let mut by_status: Vec<(u16, u64)> = Vec::new();
    for o in outcomes.filter(|o| !o.ok) {
        match by_status.iter_mut().find(|(s, _)| *s == o.status) {
            Some((_, n)) => *n += 1,
            None => by_status.push((o.status, 1)),
        }
    }
    let parts: Vec<String> = by_status
        .iter()
        .map(|(s, n)| format!("{n} x status {s}"))
        .collect();
    eprintln!(
        "llmgate-bench: failed requests to {}: {} (status 0 = no response, 200 = bad body)",
        target.uri,
        parts.join(", ")
    );
}
