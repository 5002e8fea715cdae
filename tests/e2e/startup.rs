//! Start-up: config validation names the file, key and problem; plugin load errors are
//! visible; the binary exits non-zero on a bad config.

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_llmgate"))
        .args(args)
        .env_remove("LLMGATE_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_config_reports_every_problem_with_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: mystery\n  - model_name: b\n    litellm_params:\n      model: openai/x\n      api_base: localhost:1234\n  - litellm_params: {model: openai/y}\nllmgate:\n  plugin_limits:\n    memory_mib: 0\n",
    )
    .unwrap();
    let (ok, err) = run(&["--config", cfg.to_str().unwrap(), "--port", "0"]);
    assert!(!ok);
    assert!(err.contains("4 problem(s)"), "{err}");
    assert!(
        err.contains(
            "bad.yaml: model_list[0].litellm_params.model: cannot tell the provider of `mystery`"
        ),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml: model_list[1].litellm_params.api_base: must start with http"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml: model_list[2].model_name: missing"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml: llmgate.plugin_limits.memory_mib"),
        "{err}"
    );
}

#[test]
fn unknown_llmgate_keys_and_yaml_errors_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, "llmgate:\n  plugin_dir: x\n").unwrap();
    let (ok, err) = run(&["--config", cfg.to_str().unwrap(), "--port", "0"]);
    assert!(!ok);
    assert!(err.contains("unknown field `plugin_dir`"), "{err}");
    std::fs::write(&cfg, "model_list: [\n").unwrap();
    let (ok, err) = run(&["--config", cfg.to_str().unwrap(), "--port", "0"]);
    assert!(!ok);
    assert!(err.contains("c.yaml"), "{err}");
}

/// Run the binary with a config text: `Some((success, stderr))` if it exited, `None` if it
/// started serving instead (it is then stopped).
fn run_config(config: &str, env: &[(&str, &str)]) -> Option<(bool, String)> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmgate"));
    let plugins = crate::harness::plugin("openai");
    cmd.args([
        "--config",
        cfg.to_str().unwrap(),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ])
    .arg("--plugins-dir")
    .arg(plugins.parent().unwrap())
    .env_remove("LLMGATE_CONFIG")
    .env_remove("LITELLM_MASTER_KEY")
    .env_remove("LLMGATE_MASTER_KEY")
    .env("LLMGATE_DB", dir.path().join("db"))
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
        let _ = tx.send(line);
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return Some((status.success(), err));
        }
        if rx
            .try_recv()
            .is_ok_and(|l| l.starts_with("llmgate listening"))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn a_master_key_that_cannot_be_resolved_refuses_to_start() {
    let models = "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n      api_key: sk-x\n";
    for (config, env, needle) in [
        (
            format!(
                "{models}general_settings:\n  master_key: os.environ/LLMGATE_TEST_NO_SUCH_VAR\n"
            ),
            vec![],
            "LLMGATE_TEST_NO_SUCH_VAR is not set",
        ),
        (
            format!("{models}general_settings:\n  master_key: os.environ/LLMGATE_TEST_EMPTY_VAR\n"),
            vec![("LLMGATE_TEST_EMPTY_VAR", "")],
            "LLMGATE_TEST_EMPTY_VAR is empty",
        ),
        (
            format!("{models}general_settings:\n  master_key: \"\"\n"),
            vec![],
            "general_settings.master_key: is empty",
        ),
    ] {
        let outcome = run_config(&config, &env);
        let Some((ok, err)) = outcome else {
            panic!("started (with authentication off) for: {config}");
        };
        assert!(!ok, "{err}");
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(err.contains("authentication off"), "{err}");
    }
}

#[test]
fn auth_settings_llmgate_cannot_honour_refuse_to_start() {
    for (setting, value) in [
        ("custom_auth", "custom_auth.user_api_key_auth"),
        ("enable_jwt_auth", "true"),
        ("allowed_ips", "[\"10.0.0.1\"]"),
    ] {
        let config = format!("general_settings:\n  master_key: sk-1234\n  {setting}: {value}\n");
        let Some((ok, err)) = run_config(&config, &[]) else {
            panic!("started, ignoring general_settings.{setting}");
        };
        assert!(!ok, "{err}");
        assert!(
            err.contains(&format!("general_settings.{setting}")),
            "{err}"
        );
        assert!(err.contains("weaker authentication"), "{err}");
    }
    // Switched off, the same keys are no reason to refuse.
    let config =
        "general_settings:\n  master_key: sk-1234\n  enable_jwt_auth: false\n  allowed_ips: []\n";
    assert!(
        run_config(config, &[]).is_none(),
        "a config with the settings switched off did not start"
    );
}

#[test]
fn missing_plugins_folder_is_a_clear_error() {
    let (ok, err) = run(&[
        "--model",
        "openai/gpt-4o",
        "--plugins-dir",
        "/nonexistent/plugins",
        "--port",
        "0",
    ]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/plugins"), "{err}");
    assert!(err.contains("build-plugins.sh"), "{err}");
}

#[tokio::test]
async fn a_broken_plugin_file_is_listed_with_its_error_and_others_still_serve() {
    let m = crate::support::mock::mock().await;
    let gw = crate::harness::Gateway::start(&crate::harness::openai_config(
        &m.url(),
        &[("g", "mock-gpt")],
    ));
    drop(gw);
    // Same again, with a junk .wasm beside the good plugins.
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for p in ["openai", "policy-ordered", "policy-router"] {
        std::fs::copy(crate::harness::plugin(p), plugins.join(format!("{p}.wasm"))).unwrap();
    }
    std::fs::write(plugins.join("junk.wasm"), b"\0asm not really").unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        crate::harness::openai_config(&m.url(), &[("g", "mock-gpt")]),
    )
    .unwrap();
    let gw = crate::harness::Gateway::start_spec(crate::harness::Spec {
        plugins: &[],
        args: &["--config", cfg.to_str().unwrap()],
        env: &[("LLMGATE_PLUGINS_DIR", plugins.to_str().unwrap())],
        no_plugins_dir_arg: true,
        ..Default::default()
    });
    let c = crate::harness::client();
    let v: serde_json::Value = c
        .get(format!("{}/plugins", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let junk = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "junk")
        .unwrap()
        .clone();
    assert!(
        junk["last_error"]
            .as_str()
            .unwrap()
            .contains("not a valid WASM component"),
        "{junk}"
    );
    let r = gw
        .post(
            "/v1/chat/completions",
            &serde_json::json!({"model": "g", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(gw.logs().contains("junk.wasm"));
}
