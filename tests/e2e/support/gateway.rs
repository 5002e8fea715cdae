//! The real `llmgate` binary: start it with a config and plugins, read its logs, stop it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::http::client;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A built plugin file, with a clear failure when it has not been built.
pub fn plugin(name: &str) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    for dir in [root().join("plugins/dist"), target.join("test-plugins")] {
        let p = dir.join(format!("{name}.wasm"));
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "plugin {name}.wasm is not built: run scripts/build-plugins.sh && scripts/build-plugins.sh --tests"
    );
}

/// A running `llmgate`; killed on drop.
pub struct Gateway {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    stderr: Arc<Mutex<String>>,
    /// Config and plugins folder live here (removed on drop).
    _dir: tempfile::TempDir,
}

/// How to start a gateway.
pub struct Spec<'a> {
    pub config: &'a str,
    pub plugins: &'a [&'a str],
    pub args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    /// Do not pass `--plugins-dir` (the test sets it another way).
    pub no_plugins_dir_arg: bool,
    /// Port to listen on; 0 (the default) picks a free one.
    pub port: u16,
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Self {
            config: "",
            plugins: &["openai", "policy-ordered"],
            args: &[],
            env: &[],
            no_plugins_dir_arg: false,
            port: 0,
        }
    }
}

impl Gateway {
    /// Start with a config text and the standard plugins.
    pub fn start(config: &str) -> Self {
        Self::start_spec(Spec {
            config,
            ..Spec::default()
        })
    }

    /// Start as specified; panics with the gateway's stderr if it does not come up.
    pub fn start_spec(spec: Spec<'_>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        for p in spec.plugins {
            std::fs::copy(plugin(p), plugins.join(format!("{p}.wasm"))).unwrap();
        }
        // The default routing policy is always there unless a test lists plugins that
        // include it (a test that wants none passes its own folder).
        if !spec.plugins.is_empty() && !spec.plugins.contains(&"policy-router") {
            std::fs::copy(plugin("policy-router"), plugins.join("policy-router.wasm")).unwrap();
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmgate"));
        cmd.args(["--host", "127.0.0.1", "--port", &spec.port.to_string()]);
        if !spec.no_plugins_dir_arg {
            cmd.arg("--plugins-dir").arg(&plugins);
        }
        if !spec.config.is_empty() {
            let cfg = dir.path().join("config.yaml");
            std::fs::write(&cfg, spec.config).unwrap();
            cmd.arg("--config").arg(cfg);
        }
        cmd.args(spec.args);
        cmd.env("LLMGATE_LOG", "info,llmgate=debug");
        cmd.env_remove("LLMGATE_CONFIG");
        cmd.env_remove("LITELLM_MASTER_KEY");
        cmd.env_remove("LLMGATE_MASTER_KEY");
        // LiteLLM's Redis fallbacks: a test shares a Redis only when it says so.
        for v in ["REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"] {
            cmd.env_remove(v);
        }
        cmd.env_remove("DATABASE_URL");
        // Each gateway gets its own database, unless the test names one.
        let sqlite = dir.path().join("llmgate.db");
        cmd.env("LLMGATE_DB", &sqlite);
        for (k, v) in spec.env {
            cmd.env(k, v);
        }
        // On PostgreSQL: the database standing for that file, unless the test or its
        // config names a database itself.
        let named = spec.config.contains("database_path") || spec.config.contains("database_url");
        if !named && !spec.env.iter().any(|(k, _)| *k == "DATABASE_URL") {
            let file = spec
                .env
                .iter()
                .find(|(k, _)| *k == "LLMGATE_DB")
                .map_or_else(|| sqlite.display().to_string(), |(_, v)| (*v).to_string());
            if let Some(url) = super::postgres::database_for(&file) {
                cmd.env("DATABASE_URL", url);
            }
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut err = child.stderr.take().unwrap();
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                std::thread::sleep(Duration::from_millis(200));
                panic!("llmgate did not start; stderr:\n{}", stderr.lock().unwrap());
            }
        };
        let url = line
            .strip_prefix("llmgate listening on ")
            .expect("listening line")
            .to_string();
        Self {
            child,
            url,
            stderr,
            _dir: dir,
        }
    }

    /// The gateway's plugins folder (when the harness made it).
    pub fn plugins_dir(&self) -> PathBuf {
        self._dir.path().join("plugins")
    }

    /// The config file the gateway was started with (when the spec had one).
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("config.yaml")
    }

    /// Send the process `signal` (`HUP`, `TERM`, ...) with `kill`.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} {} failed", self.child.id());
    }

    /// Everything the gateway logged so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The log once it contains `needle` (the stderr reader may lag what the gateway did),
    /// or as it is after `timeout`: the caller's assertion says which.
    pub fn logs_once(&self, needle: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let logs = self.logs();
            if logs.contains(needle) || std::time::Instant::now() > deadline {
                return logs;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop gracefully: `kill -TERM <pid>`, then wait up to `timeout` for the exit.
    /// Returns the exit status, or `None` if the process did not exit in time (it is then
    /// still killed on drop).
    pub fn stop_graceful(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        if let Some(status) = self.child.try_wait().unwrap() {
            return Some(status);
        }
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {} failed", self.child.id());
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// `GET {url}{path}`, answered with JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        client()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `POST {url}{path}` with a JSON body.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        client()
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
