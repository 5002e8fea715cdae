//! rpm/tpm windows in Redis: one counter per scope and calendar minute, checked and
//! counted by one Lua script.

use redis::aio::ConnectionManager;

use super::COMMAND_TIMEOUT;

/// How long a window counter outlives its minute (then Redis drops it).
const KEEP_MS: u64 = 120_000;

/// One limit a request must pass: the counter `key`, its `limit` (refused when the count
/// is already at or over it), and what to `add` when every counter passes (1 for an rpm
/// window, 0 for a tpm window, whose tokens are added when the request settles).
#[derive(Debug, Clone)]
pub struct Counter {
    /// The counter's key ([`window_key`]).
    pub key: String,
    /// The limit.
    pub limit: u64,
    /// Added when the check passes.
    pub add: u64,
}

/// What Redis said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Every counter passed; their values after the additions, in order.
    Admitted(Vec<u64>),
    /// Counter `index` is at `count`, at or over its limit: nothing was added.
    Refused {
        /// Which counter.
        index: usize,
        /// Its value.
        count: u64,
    },
    /// No answer from Redis (down, failing, slow): count locally.
    Local,
}

/// `llmgate:<scope>:<id>:<what>:<minute>`: e.g. `llmgate:key:<hash>:rpm:29430211`.
pub fn window_key(scope: &str, id: &str, what: &str, minute: i64) -> String {
    format!("llmgate:{scope}:{id}:{what}:{minute}")
}

/// Check every counter against its limit; only if all pass, add to each.
const CHECK: &str = r"
local n = #KEYS
local out = {1}
for i = 1, n do
  local cur = tonumber(redis.call('GET', KEYS[i]) or '0')
  if cur >= tonumber(ARGV[2 * i - 1]) then return {0, i, cur} end
  out[i + 1] = cur
end
for i = 1, n do
  local add = tonumber(ARGV[2 * i])
  if add > 0 then
    out[i + 1] = redis.call('INCRBY', KEYS[i], add)
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * n + 1])
  end
end
return out
";

fn script() -> &'static redis::Script {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| redis::Script::new(CHECK))
}

/// Run the check on `conn` (see [`super::Shared::check`]).
pub(super) async fn check(conn: &mut ConnectionManager, counters: &[Counter]) -> Check {
    if counters.is_empty() {
        return Check::Admitted(Vec::new());
    }
    let mut inv = script().prepare_invoke();
    for c in counters {
        inv.key(&c.key).arg(c.limit).arg(c.add);
    }
    inv.arg(KEEP_MS);
    let answer = tokio::time::timeout(COMMAND_TIMEOUT, inv.invoke_async::<Vec<u64>>(conn)).await;
    match answer {
        Ok(Ok(v)) => read(&v, counters.len()),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "Redis window check failed; counting locally");
            Check::Local
        }
        Err(_) => {
            tracing::debug!("Redis window check timed out; counting locally");
            Check::Local
        }
    }
}

/// The script's answer: `[1, values...]` or `[0, index (1-based), count]`.
fn read(v: &[u64], n: usize) -> Check {
    match v {
        [1, rest @ ..] if rest.len() == n => Check::Admitted(rest.to_vec()),
        [0, i, count] if *i >= 1 => Check::Refused {
            index: (*i - 1) as usize,
            count: *count,
        },
        _ => Check::Local,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_back() {
        assert_eq!(read(&[1, 3, 40], 2), Check::Admitted(vec![3, 40]));
        assert_eq!(
            read(&[0, 2, 90], 2),
            Check::Refused {
                index: 1,
                count: 90
            }
        );
        assert_eq!(read(&[1, 3], 2), Check::Local);
        assert_eq!(window_key("key", "ab", "rpm", 7), "llmgate:key:ab:rpm:7");
    }
}
