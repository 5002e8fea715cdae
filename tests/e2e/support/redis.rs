//! A real `redis-server` on a loopback port, in a temp dir, for the tests of state shared
//! between instances. Absent locally: the test is skipped with the reason printed; absent
//! in CI (`CI=true`): the test fails (`scripts/test.sh` installs Debian's `redis-server`).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary: `LLMGATE_REDIS_SERVER`, else `redis-server` on the `PATH`.
fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LLMGATE_REDIS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

/// A running `redis-server`; killed on drop.
pub struct Redis {
    child: Option<Child>,
    bin: PathBuf,
    /// The port it listens on (kept across [`Redis::restart`]).
    pub port: u16,
    password: Option<String>,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Start one (with `--requirepass` when `password` is set), or `None` (printed why)
    /// when `redis-server` is not installed and this is not CI.
    pub fn start(password: Option<&str>) -> Option<Self> {
        let Some(bin) = binary() else {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "redis-server is not installed (CI=true): scripts/test.sh installs it with apt-get"
            );
            eprintln!("skipped: redis-server is not installed (apt-get install redis-server)");
            return None;
        };
        let port = free_port();
        let mut r = Self {
            child: None,
            bin,
            port,
            password: password.map(str::to_string),
            dir: tempfile::tempdir().unwrap(),
        };
        r.spawn();
        Some(r)
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill it (SIGKILL): its data is gone, as after a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// `router_settings` entries that point a gateway here (the password by
    /// `os.environ/TEST_REDIS_PASSWORD`, which [`Redis::env`] sets).
    pub fn router_settings(&self) -> Vec<(&'static str, serde_json::Value)> {
        let mut s = vec![
            ("redis_host", serde_json::json!("127.0.0.1")),
            ("redis_port", serde_json::json!(self.port)),
        ];
        if self.password.is_some() {
            s.push((
                "redis_password",
                serde_json::json!("os.environ/TEST_REDIS_PASSWORD"),
            ));
        }
        s
    }

    /// The environment a gateway needs for [`Redis::router_settings`].
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.password
            .iter()
            .map(|p| ("TEST_REDIS_PASSWORD", p.clone()))
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port free now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
