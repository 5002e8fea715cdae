//! `--callgrind N`: instructions per request, counted by valgrind's callgrind.
//!
//! The gateway runs under `valgrind --tool=callgrind`, not instrumented at first; for each
//! workload this sends a warm-up, turns instrumentation on and zeroes the counters
//! (`callgrind_control -i on`, `-z`), sends `N` requests one after
//! another on one keep-alive connection (each checked), waits for the trace export to go
//! quiet, dumps (`callgrind_control -d`) and reads the dump's total. The total covers every
//! thread of the gateway (event loops, store thread, span export), so it is the whole
//! process's work for those requests, independent of how busy the machine is. The dumps
//! are kept (their paths are printed) for `callgrind_annotate`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::admin::{self, BenchKey};
use crate::load::{self, Target};
use crate::{Args, collector, dedup, procs};

/// Requests sent before the counters are zeroed.
const WARMUP: u64 = 30;
/// How long the gateway may take to start under valgrind.
const START_TIMEOUT: Duration = Duration::from_secs(900);
/// Without traces, the wait after the requests (the store's group commit and the like).
const QUIET: Duration = Duration::from_millis(1500);
/// With traces, the export has gone quiet when no export arrived for this long: longer
/// than the batch span processor's scheduled delay (`OTEL_BSP_SCHEDULE_DELAY`, 5 s), so
/// the last partial batch is counted too, as batches of their default size are.
const QUIET_TRACES: Duration = Duration::from_secs(7);
/// The function whose inclusive count is the sinks' work on the request's task.
const SINKS: &str = "llmgate::observe::Observer::record";

/// Run `gateway` (the gateway's command, not yet started) under callgrind and print the
/// instructions per request of every workload in `args`; `Ok(false)` if a request failed.
pub async fn count(
    args: &Args,
    gateway: Command,
    requests: u64,
    key: &BenchKey,
) -> anyhow::Result<bool> {
    if requests == 0 {
        bail!("--callgrind needs a positive number of requests");
    }
    let out_dir = std::env::temp_dir().join(format!("llmgate-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let cmd = valgrind(gateway, &out_dir.join("callgrind.out"));
    eprintln!("llmgate-bench: starting the gateway under callgrind (this takes a while)");
    let (gateway, url) =
        procs::spawn_listening("llmgate", cmd, "llmgate listening on ", START_TIMEOUT)?;
    let client = load::client();
    let mode = args.key_mode();
    let auth = if mode.on() {
        admin::generate(&client, &url, key, mode, args.redis_url.is_some()).await?;
        key.auth()?
    } else {
        load::default_auth()
    };
    println!(
        "| workload | observe | keys | requests | gateway Ir per request | of which sinks on the request's task ({SINKS}) | dump |\n|---|---|---|---|---|---|---|"
    );
    for w in dedup(&args.workloads) {
        let target = Target {
            uri: format!("{url}{}", w.via_path())
                .parse()
                .with_context(|| format!("bad URL {url}"))?,
            body: w.via_body("bench")?,
            streamed: w.streamed(),
            auth: auth.clone(),
        };
        send(&client, &target, WARMUP).await?;
        settle(args).await;
        control(gateway.pid(), "-i on")?;
        control(gateway.pid(), "-z")?;
        send(&client, &target, requests).await?;
        settle(args).await;
        let before = dumps(&out_dir)?;
        control(gateway.pid(), "-d")?;
        let dump = new_dump(&out_dir, &before)?;
        control(gateway.pid(), "-i off")?;
        let total = total_ir(&dump)?;
        let sinks = inclusive_ir(&dump, SINKS)?;
        println!(
            "| {} | {:?} | {:?} | {requests} | {} | {} | {} |",
            w.name(),
            args.observe,
            mode,
            total / requests,
            sinks / requests,
            dump.display()
        );
    }
    drop(gateway);
    Ok(true)
}

/// `gateway` wrapped in valgrind's callgrind, writing its dumps to `out`.
fn valgrind(gateway: Command, out: &Path) -> Command {
    let mut cmd = Command::new("valgrind");
    // Not instrumented until the measured requests (`callgrind_control -i on`): start-up
    // (compiling the plugins) runs several times faster that way.
    cmd.arg("--tool=callgrind")
        .arg("--instr-atstart=no")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(gateway.get_program())
        .args(gateway.get_args());
    for (name, value) in gateway.get_envs() {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    cmd
}

/// Send `n` requests one after another; fail on the first that is not a proper answer.
async fn send(client: &load::HttpClient, target: &Target, n: u64) -> anyhow::Result<()> {
    for i in 0..n {
        let outcome = load::send(client, target).await;
        if !outcome.ok {
            bail!(
                "request {i} to {} failed (status {})",
                target.uri,
                outcome.status
            );
        }
    }
    Ok(())
}

/// Wait until the gateway has finished the work the last requests left behind: with
/// traces on, until no export arrived for [`QUIET_TRACES`]; otherwise for [`QUIET`].
async fn settle(args: &Args) {
    let quiet = if args.observe.traces() {
        QUIET_TRACES
    } else {
        QUIET
    };
    let mut last = collector::received().0;
    loop {
        tokio::time::sleep(quiet).await;
        let now = collector::received().0;
        if !args.observe.traces() || now == last {
            return;
        }
        last = now;
    }
}

/// Run `callgrind_control FLAG PID`.
fn control(pid: u32, flag: &str) -> anyhow::Result<()> {
    let status = Command::new("callgrind_control")
        .args(flag.split(' '))
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .context("running callgrind_control (install valgrind)")?;
    if !status.success() {
        bail!("callgrind_control {flag} {pid} failed: {status}");
    }
    Ok(())
}

/// The dump files in `dir`.
fn dumps(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        files.push(entry?.path());
    }
    Ok(files)
}

/// The dump that appeared in `dir` since `before` (callgrind writes it before
/// `callgrind_control -d` returns).
fn new_dump(dir: &Path, before: &[PathBuf]) -> anyhow::Result<PathBuf> {
    dumps(dir)?
        .into_iter()
        .find(|f| !before.contains(f))
        .with_context(|| format!("no new callgrind dump in {}", dir.display()))
}

/// The total of the first event (Ir) in a callgrind dump: its `summary:` or `totals:` line.
fn total_ir(dump: &Path) -> anyhow::Result<u64> {
    let text =
        std::fs::read_to_string(dump).with_context(|| format!("reading {}", dump.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no summary line in {}", dump.display()))
}

/// The inclusive Ir of `function` in `dump` (0 if it never ran), from `callgrind_annotate`.
fn inclusive_ir(dump: &Path, function: &str) -> anyhow::Result<u64> {
    let out = Command::new("callgrind_annotate")
        .arg("--inclusive=yes")
        .arg("--threshold=100")
        .arg(dump)
        .output()
        .context("running callgrind_annotate (install valgrind)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The function can be listed twice (its own body, and inlined at its call site under
    // the caller's file): the larger is the whole.
    Ok(text
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .filter(|l| l.contains(&format!(":{function}")))
        .filter_map(|l| l.split_whitespace().next()?.replace(',', "").parse().ok())
        .max()
        .unwrap_or(0))
}
