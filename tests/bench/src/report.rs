//! Results: percentile summaries, CPU accounting, the JSON document and the text table.

use std::fmt::Write as _;

use serde::Serialize;

/// Latency percentiles (nearest rank) over successful requests, in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Percentiles {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest sample.
    pub max_us: u64,
    /// Arithmetic mean.
    pub mean_us: f64,
}

impl Percentiles {
    /// Summarise `samples` (sorted in place).
    pub fn of(samples: &mut [u64]) -> Self {
        samples.sort_unstable();
        let n = samples.len();
        if n == 0 {
            return Self::default();
        }
        let rank = |p: f64| {
            let i = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            samples.get(i).copied().unwrap_or_default()
        };
        Self {
            count: n,
            p50_us: rank(0.50),
            p90_us: rank(0.90),
            p99_us: rank(0.99),
            max_us: samples.last().copied().unwrap_or_default(),
            mean_us: samples.iter().sum::<u64>() as f64 / n as f64,
        }
    }
}

/// CPU time (user + system) per request during one phase, in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CpuPerRequest {
    /// The gateway process.
    pub gateway_us: f64,
    /// The mock upstream process.
    pub mock_us: f64,
    /// The bare reference proxy (0 when it is not run).
    pub bare_us: f64,
    /// This load generator.
    pub loadgen_us: f64,
    /// Gateway CPU over the whole phase, milliseconds (resolution: one clock tick).
    pub gateway_total_ms: f64,
}

impl CpuPerRequest {
    /// CPU of the process in the middle: the bare proxy for its own target, else the gateway.
    pub fn hop_us(&self, bare: bool) -> f64 {
        if bare { self.bare_us } else { self.gateway_us }
    }
}

/// Cumulative CPU ticks of the three processes at one moment.
#[derive(Clone, Copy, Debug)]
pub struct CpuSnapshot {
    /// Gateway ticks.
    pub gateway: u64,
    /// Mock ticks.
    pub mock: u64,
    /// Bare proxy ticks (0 when it is not run).
    pub bare: u64,
    /// Load generator ticks.
    pub loadgen: u64,
}

impl CpuSnapshot {
    /// CPU per request between `self` and a later snapshot, over `requests` requests.
    pub fn per_request(
        &self,
        later: &CpuSnapshot,
        requests: u64,
        ticks_per_s: u64,
    ) -> CpuPerRequest {
        let us_per_tick = 1e6 / ticks_per_s.max(1) as f64;
        let per = |a: u64, b: u64| {
            if requests == 0 {
                0.0
            } else {
                b.saturating_sub(a) as f64 * us_per_tick / requests as f64
            }
        };
        CpuPerRequest {
            gateway_us: per(self.gateway, later.gateway),
            mock_us: per(self.mock, later.mock),
            bare_us: per(self.bare, later.bare),
            loadgen_us: per(self.loadgen, later.loadgen),
            gateway_total_ms: later.gateway.saturating_sub(self.gateway) as f64 * us_per_tick
                / 1000.0,
        }
    }
}

/// One target's fixed-rate (open-loop) phase.
#[derive(Clone, Debug, Serialize)]
pub struct FixedRate {
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed (non-200, transport error, timeout, truncated stream).
    pub errors: u64,
    /// Latency from the scheduled send time to the last body byte.
    pub latency: Percentiles,
    /// Latency from the actual send to the last body byte (excludes scheduler lag).
    pub service: Percentiles,
    /// Time from the scheduled send time to the first body byte.
    pub ttfb: Percentiles,
    /// How late sends left the scheduler (health of the load generator).
    pub scheduler_lag: Percentiles,
    /// Response body size of the first successful request, bytes.
    pub response_bytes: usize,
    /// CPU per request.
    pub cpu: CpuPerRequest,
}

/// One target's saturation (closed-loop) phase.
#[derive(Clone, Debug, Serialize)]
pub struct Saturation {
    /// Successful requests per second.
    pub rps: f64,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// Latency of successful requests.
    pub latency: Percentiles,
    /// CPU per request.
    pub cpu: CpuPerRequest,
}

/// One measurement per target: straight to the mock, through the bare reference proxy,
/// and through the gateway.
#[derive(Clone, Debug, Serialize)]
pub struct Pair<T> {
    /// Straight to the mock upstream.
    pub direct: T,
    /// Through the bare reference proxy (absent with `--no-bare-proxy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bare: Option<T>,
    /// Through the gateway.
    pub via: T,
}

/// Everything measured for one workload.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadResult {
    /// Workload name.
    pub name: &'static str,
    /// Whether responses are streamed.
    pub streamed: bool,
    /// Request body sizes, bytes.
    pub request_bytes: Pair<usize>,
    /// Fixed-rate results.
    pub fixed_rate: Pair<FixedRate>,
    /// Via minus direct, fixed-rate p50 latency, microseconds.
    pub added_p50_us: i64,
    /// Via minus direct, fixed-rate p99 latency, microseconds.
    pub added_p99_us: i64,
    /// Via minus direct, fixed-rate p50 time to first byte, microseconds.
    pub added_ttfb_p50_us: i64,
    /// Bare minus direct, fixed-rate p50: what a hop with no logic costs on this machine.
    pub bare_hop_p50_us: Option<i64>,
    /// Via minus bare, fixed-rate p50: what the gateway adds beyond a bare proxy hop.
    pub over_bare_p50_us: Option<i64>,
    /// Via minus bare, fixed-rate p99.
    pub over_bare_p99_us: Option<i64>,
    /// Saturation results (absent with `--skip-saturation`).
    pub saturation: Option<Pair<Saturation>>,
}

/// Gateway memory, MiB.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Memory {
    /// `VmRSS` right after start, before any request.
    pub idle_rss_mib: f64,
    /// `VmHWM` (peak RSS) at the end.
    pub peak_rss_mib: f64,
    /// `VmRSS` at the end.
    pub final_rss_mib: f64,
}

/// The machine the run happened on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// Logical cores available.
    pub cores: usize,
    /// CPU model, if known.
    pub cpu_model: Option<String>,
    /// Clock ticks per second (resolution of the CPU accounting).
    pub clock_ticks_per_second: u64,
    /// Caveat about the shared machine.
    pub note: &'static str,
}

/// The run's settings.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Fixed-rate requests per second.
    pub rate: f64,
    /// Seconds per phase and target.
    pub seconds: f64,
    /// Closed-loop workers.
    pub concurrency: usize,
    /// Warm-up seconds per target and workload.
    pub warmup_seconds: f64,
    /// Load-generator runtime threads.
    pub loadgen_threads: usize,
    /// The gateway's store: `sqlite`, `postgresql`, with ` + redis` when Redis is on.
    pub store: &'static str,
    /// The virtual key the requests went with through the gateway.
    pub key: crate::admin::KeyMode,
}

/// Error totals over all measured phases.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Errors {
    /// Requests measured.
    pub requests: u64,
    /// Of which failed.
    pub failed: u64,
    /// Worst error rate of a single phase.
    pub worst_phase_rate: f64,
    /// Errors during warm-ups (not measured).
    pub warmup_failed: u64,
}

/// The JSON document.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Machine description.
    pub machine: Machine,
    /// Settings.
    pub settings: Settings,
    /// Gateway start-up time (spawn to listening), milliseconds.
    pub gateway_startup_ms: f64,
    /// Gateway memory.
    pub gateway_memory: Memory,
    /// Per-workload results.
    pub workloads: Vec<WorkloadResult>,
    /// Error totals.
    pub errors: Errors,
    /// Whether the error rate stayed within the limit.
    pub passed: bool,
}

/// Bytes to MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn signed(v: i64) -> String {
    if v >= 0 {
        format!("+{v}")
    } else {
        v.to_string()
    }
}

/// The report as a readable text table.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let s_ = &r.settings;
    let _ = writeln!(
        s,
        "llmgate-bench: {} cores ({}); {}",
        m.cores,
        m.cpu_model.as_deref().unwrap_or("unknown CPU"),
        m.note
    );
    let _ = writeln!(
        s,
        "gateway: ready in {:.0} ms; RSS idle {:.1} MiB, peak (VmHWM) {:.1} MiB, at end {:.1} MiB",
        r.gateway_startup_ms,
        r.gateway_memory.idle_rss_mib,
        r.gateway_memory.peak_rss_mib,
        r.gateway_memory.final_rss_mib
    );
    let _ = writeln!(s, "gateway: store {}, key {:?}", s_.store, s_.key);
    let sizes: Vec<String> = r
        .workloads
        .iter()
        .map(|w| format!("{} {} B", w.name, w.request_bytes.via))
        .collect();
    let _ = writeln!(s, "request bodies: {}", sizes.join(", "));
    let _ = writeln!(
        s,
        "CPU columns: user+system time per request in µs (tick = {} µs); hop = the process in the middle (the gateway for via, the bare proxy for bare, the idle gateway for direct), gen = this load generator",
        1_000_000 / m.clock_ticks_per_second.max(1)
    );

    let _ = writeln!(
        s,
        "\nFixed rate: {} req/s for {} s per target; latency from the scheduled send time, µs",
        s_.rate, s_.seconds
    );
    let _ = writeln!(
        s,
        "{:<16} {:<7} {:>6} {:>4} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}",
        "workload",
        "target",
        "reqs",
        "err",
        "p50",
        "p90",
        "p99",
        "max",
        "svc p50",
        "ttfb p50",
        "hop cpu",
        "mock",
        "gen"
    );
    for w in &r.workloads {
        let rows = [
            ("direct", Some(&w.fixed_rate.direct)),
            ("bare", w.fixed_rate.bare.as_ref()),
            ("via", Some(&w.fixed_rate.via)),
        ];
        for (label, f) in rows {
            let Some(f) = f else { continue };
            let ttfb = if w.streamed {
                f.ttfb.p50_us.to_string()
            } else {
                "-".into()
            };
            let _ = writeln!(
                s,
                "{:<16} {:<7} {:>6} {:>4} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>7.0} {:>7.0} {:>7.0}",
                w.name,
                label,
                f.requests,
                f.errors,
                f.latency.p50_us,
                f.latency.p90_us,
                f.latency.p99_us,
                f.latency.max_us,
                f.service.p50_us,
                ttfb,
                f.cpu.hop_us(label == "bare"),
                f.cpu.mock_us,
                f.cpu.loadgen_us
            );
        }
        let (d, v) = (&w.fixed_rate.direct, &w.fixed_rate.via);
        let added = |a: u64, b: u64| signed(b as i64 - a as i64);
        let ttfb = if w.streamed {
            signed(w.added_ttfb_p50_us)
        } else {
            "-".into()
        };
        let _ = writeln!(
            s,
            "{:<16} {:<7} {:>6} {:>4} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>7.0}",
            "",
            "added",
            "",
            "",
            signed(w.added_p50_us),
            added(d.latency.p90_us, v.latency.p90_us),
            signed(w.added_p99_us),
            "",
            added(d.service.p50_us, v.service.p50_us),
            ttfb,
            v.cpu.gateway_us
        );
        if let Some(b) = &w.fixed_rate.bare {
            let _ = writeln!(
                s,
                "{:<16} {:<7} {:>6} {:>4} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>7.0}",
                "",
                "vs bare",
                "",
                "",
                added(b.latency.p50_us, v.latency.p50_us),
                added(b.latency.p90_us, v.latency.p90_us),
                added(b.latency.p99_us, v.latency.p99_us),
                "",
                added(b.service.p50_us, v.service.p50_us),
                if w.streamed {
                    added(b.ttfb.p50_us, v.ttfb.p50_us)
                } else {
                    "-".into()
                },
                v.cpu.gateway_us - b.cpu.bare_us
            );
        }
    }

    let worst_lag = r
        .workloads
        .iter()
        .flat_map(|w| {
            [
                Some(&w.fixed_rate.direct),
                w.fixed_rate.bare.as_ref(),
                Some(&w.fixed_rate.via),
            ]
        })
        .flatten()
        .map(|f| f.scheduler_lag)
        .max_by_key(|l| l.p99_us)
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "load-generator lag (scheduled send -> request task running), worst phase: p50 {} µs, p99 {} µs",
        worst_lag.p50_us, worst_lag.p99_us
    );

    if r.workloads.iter().any(|w| w.saturation.is_some()) {
        let _ = writeln!(
            s,
            "\nSaturation: {} concurrent requests (closed loop) for {} s per target",
            s_.concurrency, s_.seconds
        );
        let _ = writeln!(
            s,
            "{:<16} {:<7} {:>9} {:>8} {:>5} {:>7} {:>7} {:>7} {:>7} {:>7}",
            "workload", "target", "req/s", "ok", "err", "p50", "p99", "hop cpu", "mock", "gen"
        );
        for w in &r.workloads {
            let Some(sat) = &w.saturation else { continue };
            let rows = [
                ("direct", Some(&sat.direct)),
                ("bare", sat.bare.as_ref()),
                ("via", Some(&sat.via)),
            ];
            for (label, x) in rows {
                let Some(x) = x else { continue };
                let _ = writeln!(
                    s,
                    "{:<16} {:<7} {:>9.0} {:>8} {:>5} {:>7} {:>7} {:>7.0} {:>7.0} {:>7.0}",
                    w.name,
                    label,
                    x.rps,
                    x.ok,
                    x.errors,
                    x.latency.p50_us,
                    x.latency.p99_us,
                    x.cpu.hop_us(label == "bare"),
                    x.cpu.mock_us,
                    x.cpu.loadgen_us
                );
            }
            let ratio = if sat.direct.rps > 0.0 {
                100.0 * sat.via.rps / sat.direct.rps
            } else {
                0.0
            };
            let _ = writeln!(s, "{:<16} {:<7} {:>8.0}%", "", "via/dir", ratio);
        }
    }

    let _ = writeln!(
        s,
        "\nSummary (gateway overhead per request; CPU from the saturation phase when run, it has the most ticks):"
    );
    for w in &r.workloads {
        let cpu = w
            .saturation
            .as_ref()
            .map_or(w.fixed_rate.via.cpu.gateway_us, |sat| {
                sat.via.cpu.gateway_us
            });
        let _ = writeln!(
            s,
            "  {:<16} added latency p50 {} µs, p99 {} µs; gateway CPU {:.0} µs/request",
            w.name,
            signed(w.added_p50_us),
            signed(w.added_p99_us),
            cpu
        );
        if let (Some(hop), Some(over), Some(over99)) =
            (w.bare_hop_p50_us, w.over_bare_p50_us, w.over_bare_p99_us)
        {
            let bare_cpu = w.saturation.as_ref().map_or_else(
                || w.fixed_rate.bare.as_ref().map_or(0.0, |b| b.cpu.bare_us),
                |sat| sat.bare.as_ref().map_or(0.0, |b| b.cpu.bare_us),
            );
            let _ = writeln!(
                s,
                "  {:<16} of which a bare proxy hop p50 {} µs ({bare_cpu:.0} µs CPU); llmgate beyond that: p50 {} µs, p99 {} µs, {:.0} µs CPU",
                "",
                signed(hop),
                signed(over),
                signed(over99),
                cpu - bare_cpu
            );
        }
    }
    let e = &r.errors;
    let _ = writeln!(
        s,
        "\nerrors: {} of {} measured requests ({:.3}%), worst phase {:.3}%; warm-up errors {}",
        e.failed,
        e.requests,
        if e.requests > 0 {
            100.0 * e.failed as f64 / e.requests as f64
        } else {
            0.0
        },
        100.0 * e.worst_phase_rate,
        e.warmup_failed
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50_us, p.p90_us, p.p99_us, p.max_us), (50, 90, 99, 100));
        assert_eq!(Percentiles::of(&mut []).count, 0);
        let mut one = [7];
        assert_eq!(Percentiles::of(&mut one).p99_us, 7);
    }
}
