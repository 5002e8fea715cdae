//! Child processes (the mock upstream and the gateway) and what `/proc` says about them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a child gets to exit after SIGTERM before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// A running child process; dropping the guard stops it (SIGTERM, then SIGKILL).
pub struct ChildGuard {
    name: &'static str,
    child: Child,
}

impl ChildGuard {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` if the child has already exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        // No libc (unsafe code is denied): ask kill(1) to deliver SIGTERM.
        let termed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if termed {
            let deadline = Instant::now() + TERM_GRACE;
            while Instant::now() < deadline {
                if self.exited().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!(
                "llmgate-bench: {} (pid {}) ignored SIGTERM, killing it",
                self.name,
                self.child.id()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `cmd` and wait (up to `timeout`) for the stdout line `<prefix>http://ADDR`.
///
/// Returns the guard and the base URL (`http://ADDR`, no trailing slash). The rest of the
/// child's stdout is drained in a background thread so it never blocks on a full pipe.
pub fn spawn_listening(
    name: &'static str,
    mut cmd: Command,
    prefix: &'static str,
    timeout: Duration,
) -> anyhow::Result<(ChildGuard, String)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
    let stdout = child.stdout.take();
    let mut guard = ChildGuard { name, child };
    let Some(stdout) = stdout else {
        bail!("{name}: no stdout pipe");
    };
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::Builder::new()
        .name(format!("{name}-stdout"))
        .spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(url) = line.trim().strip_prefix(prefix) {
                    sent = tx.send(url.trim_end_matches('/').to_owned()).is_ok();
                } else {
                    eprintln!("[{name}] {line}");
                }
            }
        })
        .context("starting the stdout reader thread")?;
    let deadline = Instant::now() + timeout;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(url) => return Ok((guard, url)),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Stdout closed without the line: the child is exiting.
                std::thread::sleep(Duration::from_millis(100));
                let status = guard.exited();
                bail!("{name} closed its stdout before listening (exit status: {status:?})");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(status) = guard.exited() {
                    bail!("{name} exited before listening: {status}");
                }
                if Instant::now() >= deadline {
                    bail!("{name} did not print `{prefix}...` within {timeout:?}");
                }
            }
        }
    }
}

/// The `KEY:   N kB` field of `/proc/<pid>/status`, in bytes.
pub fn status_kb(pid: u32, key: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .with_context(|| format!("no {key} in {path}"))?;
    let kb: u64 = value
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("parsing {key} {value:?}"))?;
    Ok(kb * 1024)
}

/// User + system CPU time of a process (all its threads, dead or alive), in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the parenthesised command name start at field 3 (state); utime and
    // stime are fields 14 and 15.
    let rest = text
        .rfind(')')
        .and_then(|i| text.get(i + 1..))
        .with_context(|| format!("malformed {path}"))?;
    let mut fields = rest.split_whitespace().skip(11);
    let mut next = || -> anyhow::Result<u64> {
        fields
            .next()
            .with_context(|| format!("short {path}"))?
            .parse()
            .with_context(|| format!("parsing {path}"))
    };
    Ok(next()? + next()?)
}

/// Clock ticks per second (`getconf CLK_TCK`, else the usual 100).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(100)
}

/// The CPU model name from `/proc/cpuinfo`, if there is one.
pub fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

/// A temporary folder removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Create a fresh folder under the system temp dir.
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path).with_context(|| format!("clearing {path:?}"))?;
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {path:?}"))?;
        Ok(Self(path))
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
