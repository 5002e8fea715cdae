//! The fault run (`--restart-postgres CMD`): steady load at a fixed rate through the
//! gateway on PostgreSQL, the database server restarted mid-run by `CMD`, and then what
//! the clients saw and what the gateway kept.
//!
//! Printed as they are, nothing filtered: per second of the run (by scheduled send time)
//! the count of each answer (200, 401, 429, other 4xx, 5xx, no answer: a connection error
//! or the 30 s timeout) and the latency p50 / max of that second's requests; the longest
//! stretch without a 200 finishing; the restart command's own duration and status. Then
//! the books: every 200's call id (`x-litellm-call-id`) must have its spend log row
//! (`/spend/logs`, read from the store after the queue is committed), and the key's spend
//! (`/key/info`) must equal the sum of its rows; after the gateway has stopped, the same
//! sum is read from the database itself with `psql` when it is installed.
//!
//! The run fails (exit status 1) when a 401 was answered for the valid key, a 200 has no
//! row, or the key's spend and its rows disagree. Other failures are printed, not judged.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::BodyExt as _;

use crate::admin;
use crate::load::{self, HttpClient, REQUEST_TIMEOUT, Target};

/// Spend figures closer than this are equal (sums of f64 in another order).
const SPEND_EPSILON: f64 = 1e-9;

/// What `--restart-postgres` asks for.
pub struct Plan {
    /// The shell command that restarts the PostgreSQL server (`sh -c`).
    pub command: String,
    /// Seconds into the load when it runs.
    pub at: f64,
    /// Requests per second.
    pub rate: f64,
    /// Seconds of load.
    pub seconds: f64,
}

/// What one request got.
struct Probe {
    /// When the answer (or the failure) was complete.
    finished: Instant,
    /// HTTP status; 0 when there was no answer.
    status: u16,
    /// A 200 with its whole body read.
    ok: bool,
    /// The answer's `x-litellm-call-id`.
    call_id: Option<String>,
}

/// Send one request; read the status, the call id and the whole body.
async fn probe(client: HttpClient, target: Arc<Target>) -> Probe {
    let req = load::request(&target);
    let exchange = async {
        let resp = client.request(req).await.ok()?;
        let status = resp.status().as_u16();
        let call_id = resp
            .headers()
            .get("x-litellm-call-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let complete = resp.into_body().collect().await.is_ok();
        Some((status, call_id, complete))
    };
    let answer = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .ok()
        .flatten();
    let (status, call_id, complete) = answer.unwrap_or((0, None, false));
    Probe {
        finished: Instant::now(),
        status,
        ok: status == 200 && complete,
        call_id,
    }
}

/// The restart command's outcome.
struct Restarted {
    /// Seconds into the load when it started and when it ended.
    from: f64,
    to: f64,
    /// Its exit status, as text.
    status: String,
}

/// Run `plan.command` at `plan.at` seconds after `start`, in a thread of its own.
fn schedule_restart(plan: &Plan, start: Instant) -> std::thread::JoinHandle<Restarted> {
    let command = plan.command.clone();
    let at = start + Duration::from_secs_f64(plan.at);
    std::thread::spawn(move || {
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let from = start.elapsed().as_secs_f64();
        eprintln!("llmgate-bench: restarting PostgreSQL at {from:.2} s: {command}");
        let status = match Command::new("sh").arg("-c").arg(&command).status() {
            Ok(s) => s.to_string(),
            Err(e) => format!("did not run: {e}"),
        };
        Restarted {
            from,
            to: start.elapsed().as_secs_f64(),
            status,
        }
    })
}

/// One second's answers, by class.
#[derive(Default, Clone, Copy)]
struct Second {
    ok: u64,
    unauthorized: u64,
    limited: u64,
    other_4xx: u64,
    server: u64,
    none: u64,
    /// Other statuses (1xx, 3xx, a 200 with a broken body).
    other: u64,
}

impl Second {
    fn count(&mut self, p: &Probe) {
        let slot = match p.status {
            _ if p.ok => &mut self.ok,
            0 => &mut self.none,
            401 => &mut self.unauthorized,
            429 => &mut self.limited,
            400..=499 => &mut self.other_4xx,
            500..=599 => &mut self.server,
            _ => &mut self.other,
        };
        *slot += 1;
    }

    fn add(&mut self, o: &Second) {
        self.ok += o.ok;
        self.unauthorized += o.unauthorized;
        self.limited += o.limited;
        self.other_4xx += o.other_4xx;
        self.server += o.server;
        self.none += o.none;
        self.other += o.other;
    }

    fn failed(&self) -> u64 {
        self.unauthorized + self.limited + self.other_4xx + self.server + self.none + self.other
    }
}

/// The percentile `q` of sorted `v`, 0 when empty.
fn pct(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v.get(i).copied().unwrap_or(0)
}

/// Run the load with the restart; `Ok(false)` when the books or the keys failed.
pub async fn run(
    client: &HttpClient,
    gateway: &str,
    target: &Target,
    token: &str,
    plan: &Plan,
) -> anyhow::Result<(bool, Vec<String>)> {
    if !(plan.at >= 0.0 && plan.at < plan.seconds) {
        bail!("--restart-at must lie within --seconds");
    }
    let first = probe(client.clone(), Arc::new(target.clone())).await;
    if !first.ok {
        bail!(
            "the first request answered {} before any restart",
            first.status
        );
    }
    eprintln!(
        "llmgate-bench: restart run: {} req/s for {} s, PostgreSQL restarted at {} s",
        plan.rate, plan.seconds, plan.at
    );
    let start = Instant::now();
    let restart = schedule_restart(plan, start);
    let sent = load::open_loop_with(client, target, plan.rate, plan.seconds, probe).await?;
    let restarted = restart
        .join()
        .map_err(|_| anyhow::anyhow!("the restart thread panicked"))?;
    let Some(&(t0, _)) = sent.first() else {
        bail!("no request was sent");
    };

    let mut lines = Vec::new();
    let mut seconds: BTreeMap<u64, (Second, Vec<u64>)> = BTreeMap::new();
    let mut total = Second::default();
    for (due, p) in &sent {
        let s = due.saturating_duration_since(t0).as_secs();
        let (counts, latencies) = seconds.entry(s).or_default();
        counts.count(p);
        latencies.push(load::micros(p.finished.saturating_duration_since(*due)));
    }
    lines.push(format!(
        "PostgreSQL restart: `{}` ran from {:.2} s to {:.2} s of the load ({:.0} ms), {}",
        plan.command,
        restarted.from,
        restarted.to,
        (restarted.to - restarted.from) * 1000.0,
        restarted.status
    ));
    lines.push(
        "second | sent | 200 | 401 | 429 | other 4xx | 5xx | no answer | other | p50 ms | max ms"
            .into(),
    );
    for (s, (counts, latencies)) in &mut seconds {
        latencies.sort_unstable();
        total.add(counts);
        lines.push(format!(
            "{s:>6} | {:>4} | {:>4} | {:>3} | {:>3} | {:>9} | {:>3} | {:>9} | {:>5} | {:>6.1} | {:>6.1}",
            latencies.len(),
            counts.ok,
            counts.unauthorized,
            counts.limited,
            counts.other_4xx,
            counts.server,
            counts.none,
            counts.other,
            pct(latencies, 0.5) as f64 / 1000.0,
            pct(latencies, 1.0) as f64 / 1000.0,
        ));
    }
    lines.push(format!(
        " total | {:>4} | {:>4} | {:>3} | {:>3} | {:>9} | {:>3} | {:>9} | {:>5} |",
        sent.len(),
        total.ok,
        total.unauthorized,
        total.limited,
        total.other_4xx,
        total.server,
        total.none,
        total.other
    ));
    lines.push(longest_gap(&sent, t0, plan.seconds));

    let books = books(client, gateway, token, &sent, &first).await?;
    lines.extend(books.lines);
    let mut failures = Vec::new();
    if total.unauthorized > 0 {
        failures.push(format!("{} x 401 for a valid key", total.unauthorized));
    }
    failures.extend(books.failures);
    let judged = failures.is_empty();
    if total.failed() > 0 {
        lines.push(format!(
            "not judged, printed: {} of {} requests did not get a 200",
            total.failed(),
            sent.len()
        ));
    }
    lines.push(if judged {
        "verdict: PASS (no 401 for the valid key; every 200 has its spend log row; the key's spend equals its rows)".into()
    } else {
        format!("verdict: FAIL: {}", failures.join("; "))
    });
    Ok((judged, lines))
}

/// The longest time with no 200 finishing, from the first send to the end of the load.
fn longest_gap(sent: &[(Instant, Probe)], t0: Instant, seconds: f64) -> String {
    let mut done: Vec<f64> = sent
        .iter()
        .filter(|(_, p)| p.ok)
        .map(|(_, p)| p.finished.saturating_duration_since(t0).as_secs_f64())
        .collect();
    done.sort_by(f64::total_cmp);
    let end = sent
        .iter()
        .map(|(_, p)| p.finished.saturating_duration_since(t0).as_secs_f64())
        .fold(seconds, f64::max);
    let mut edges = vec![0.0];
    edges.extend(done);
    edges.push(end);
    let (from, to) = edges
        .windows(2)
        .filter_map(|w| Some((*w.first()?, *w.get(1)?)))
        .max_by(|a, b| (a.1 - a.0).total_cmp(&(b.1 - b.0)))
        .unwrap_or((0.0, end));
    format!(
        "longest time with no 200 finishing: {:.0} ms (from {from:.3} s to {to:.3} s)",
        (to - from) * 1000.0
    )
}

/// What the books say, and what is wrong in them.
struct Books {
    lines: Vec<String>,
    failures: Vec<String>,
}

/// Compare the 200s with the spend log rows and the key's spend.
async fn books(
    client: &HttpClient,
    gateway: &str,
    token: &str,
    sent: &[(Instant, Probe)],
    first: &Probe,
) -> anyhow::Result<Books> {
    let recorded = admin::recorded(client, gateway, token)
        .await
        .context("reading the key and its spend logs after the run")?;
    let ids: HashSet<&str> = recorded.rows.iter().map(|(id, _, _)| id.as_str()).collect();
    let oks: Vec<&Probe> = sent
        .iter()
        .map(|(_, p)| p)
        .chain(std::iter::once(first))
        .filter(|p| p.ok)
        .collect();
    let without_id = oks.iter().filter(|p| p.call_id.is_none()).count();
    let missing = oks
        .iter()
        .filter_map(|p| p.call_id.as_deref())
        .filter(|id| !ids.contains(id))
        .count();
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, _, status) in &recorded.rows {
        *by_status.entry(status.as_str()).or_default() += 1;
    }
    let rows_spend: f64 = recorded.rows.iter().map(|(_, s, _)| s).sum();
    let mut lines = vec![
        format!(
            "books: {} answers 200 (the first request included), {} spend log rows for the key ({})",
            oks.len(),
            recorded.rows.len(),
            by_status
                .iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!("books: 200s without their row: {missing}; 200s without a call id: {without_id}"),
        format!(
            "books: key spend {:.9} (/key/info), sum of its rows {rows_spend:.9}, difference {:+.3e}",
            recorded.spend,
            recorded.spend - rows_spend
        ),
    ];
    let mut failures = Vec::new();
    if missing > 0 || without_id > 0 {
        failures.push(format!(
            "{missing} x 200 without a spend log row, {without_id} without a call id"
        ));
    }
    if (recorded.spend - rows_spend).abs() > SPEND_EPSILON {
        failures.push("the key's spend differs from the sum of its rows".into());
    }
    if recorded.rows.is_empty() {
        lines.push("books: no rows at all".into());
    }
    Ok(Books { lines, failures })
}

/// After the gateway stopped: the key's spend and its rows as the database holds them,
/// through `psql` (`None` when psql is not installed). Fails on a difference.
pub fn database_books(database_url: &str, alias: &str) -> anyhow::Result<Option<String>> {
    let query = format!(
        "SELECT k.spend, count(l.request_id), coalesce(sum(l.spend), 0) \
         FROM llmgate_verification_tokens k LEFT JOIN llmgate_spend_logs l ON l.api_key = k.token \
         WHERE k.key_alias = '{alias}' GROUP BY k.spend"
    );
    let out = match Command::new("psql")
        .args(["-X", "-A", "-t", "-F", " ", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(&query)
        .arg(database_url)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow::Error::new(e).context("running psql")),
    };
    if !out.status.success() {
        bail!(
            "psql failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [spend, rows, sum] = fields.as_slice() else {
        bail!("psql answered `{}` for the key's books", text.trim());
    };
    let spend: f64 = spend.parse().context("the key's spend")?;
    let sum: f64 = sum.parse().context("the rows' sum")?;
    let line = format!(
        "database (after the gateway stopped): key spend {spend:.9}, {rows} rows summing to {sum:.9}, difference {:+.3e}",
        spend - sum
    );
    if (spend - sum).abs() > SPEND_EPSILON {
        bail!("{line}");
    }
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64, status: u16) -> (Instant, Probe) {
        let finished = t0 + Duration::from_millis(ms);
        let p = Probe {
            finished,
            status,
            ok: status == 200,
            call_id: None,
        };
        (t0, p)
    }

    #[test]
    fn answers_are_counted_by_class() {
        let t0 = Instant::now();
        let mut s = Second::default();
        for status in [200, 200, 401, 429, 404, 502, 503, 0, 302] {
            s.count(&at(t0, 0, status).1);
        }
        let broken = Probe {
            ok: false,
            ..at(t0, 0, 200).1
        };
        s.count(&broken);
        assert_eq!(
            (
                s.ok,
                s.unauthorized,
                s.limited,
                s.other_4xx,
                s.server,
                s.none,
                s.other
            ),
            (2, 1, 1, 1, 2, 1, 2)
        );
        assert_eq!(s.failed(), 8);
    }

    #[test]
    fn the_longest_gap_counts_only_200s_and_the_edges() {
        let t0 = Instant::now();
        let sent = [
            at(t0, 100, 200),
            at(t0, 200, 503),
            at(t0, 900, 200),
            at(t0, 1000, 200),
        ];
        assert!(
            longest_gap(&sent, t0, 1.0).starts_with("longest time with no 200 finishing: 800 ms")
        );
        // Nothing but failures: the whole run.
        let failed = [at(t0, 100, 0), at(t0, 2500, 0)];
        assert!(longest_gap(&failed, t0, 2.0).contains("2500 ms (from 0.000 s to 2.500 s)"));
    }

    #[test]
    fn percentiles_of_sorted_samples() {
        assert_eq!(pct(&[], 0.5), 0);
        assert_eq!(pct(&[1, 2, 3, 4, 5], 0.5), 3);
        assert_eq!(pct(&[1, 2, 3, 4, 5], 1.0), 5);
    }
}
