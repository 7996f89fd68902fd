//! Shared helpers for the end-to-end tests: building the test plugins and the `plugboard`
//! binary for real, and temporary plugin directories.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use plugboard::plugins::{Limits, Runtime};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// Cargo's target folder.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root());
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "OUT_DIR",
    ] {
        command.env_remove(var);
    }
    // What `cargo test` sets for the test binary (its package's name, version, folder): a
    // build script that watches one of these (ring's does) would run again, and everything
    // above it would be rebuilt, each time a test builds something.
    for (var, _) in std::env::vars_os() {
        let var = var.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
        ]
        .iter()
        .any(|prefix| var.starts_with(prefix))
        {
            command.env_remove(var.as_ref());
        }
    }
    command
}

fn run(mut command: Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {what}: {e}"));
    assert!(
        output.status.success(),
        "building {what} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The test plugins, built for wasm32-wasip2 (once per test process). Returns the folder
/// holding `loops.wasm`, `panics.wasm`, `allocates.wasm`, `garbage.wasm`, `probe-v1.wasm`,
/// `probe-v2.wasm`, `future-contract.wasm`, `tool-use.wasm` and `contract-v0-1.wasm`.
pub fn test_plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = target_dir().join("plugins");
        let built = target.join("wasm32-wasip2").join("plugin");
        let out = target.join("test-plugins");
        std::fs::create_dir_all(&out).expect("cannot create the test plugin folder");
        let build = |package: &str, features: &str, file: &str, name: &str| {
            let mut command = cargo();
            command
                .args([
                    "build",
                    "--target",
                    "wasm32-wasip2",
                    "--profile",
                    "plugin",
                    "--target-dir",
                ])
                .arg(&target)
                .args(["-p", package]);
            if !features.is_empty() {
                command.args(["--features", features]);
            }
            run(command, name);
            std::fs::copy(built.join(file), out.join(format!("{name}.wasm")))
                .unwrap_or_else(|e| panic!("cannot copy {file}: {e}"));
        };
        for behaviour in ["loops", "panics", "allocates", "garbage"] {
            build(
                "test-plugin-misbehave",
                behaviour,
                "test_plugin_misbehave.wasm",
                behaviour,
            );
        }
        build(
            "test-plugin-probe",
            "",
            "test_plugin_probe.wasm",
            "probe-v1",
        );
        build(
            "test-plugin-probe",
            "v2",
            "test_plugin_probe.wasm",
            "probe-v2",
        );
        build(
            "test-plugin-future-contract",
            "",
            "test_plugin_future_contract.wasm",
            "future-contract",
        );
        build("adapter-tool-use", "", "adapter_tool_use.wasm", "tool-use");
        build(
            "test-plugin-contract-v0-1",
            "",
            "test_plugin_contract_v0_1.wasm",
            "contract-v0-1",
        );
        out
    })
}

/// A test plugin's bytes.
pub fn plugin_bytes(name: &str) -> Vec<u8> {
    let path = test_plugins().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A component with a custom section appended: it behaves the same, and neither a compile
/// cache nor a plugin folder's hashes know it. `payload` sets its size: past 2 MiB a small
/// component takes a tiered runtime's quick tier, as a JavaScript or Python one does.
pub fn with_custom_section(wasm: &[u8], payload: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"plugboard-test";
    let mut contents = Vec::new();
    leb(name.len(), &mut contents);
    contents.extend_from_slice(name);
    contents.extend_from_slice(payload);
    let mut out = wasm.to_vec();
    out.push(0);
    leb(contents.len(), &mut out);
    out.extend(contents);
    out
}

/// The `plugboard` binary, built in the profile the tests run in.
pub fn plugboard_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test knows its path");
        // target/<profile>/deps/all-xxxx → target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("tests run from target/<profile>/deps");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        // `--workspace`: features resolved as `cargo test --workspace` resolves them, so the
        // binary reuses the dependencies the tests were built with.
        let mut command = cargo();
        command.args(["build", "--workspace", "--bin", "plugboard"]);
        match profile {
            "debug" => {}
            "release" => {
                command.arg("--release");
            }
            other => {
                command.args(["--profile", other]);
            }
        }
        run(command, "the plugboard binary");
        profile_dir.join("plugboard")
    })
}

/// A runtime with the default limits and no compile cache (tests must not share state).
pub fn runtime() -> Arc<Runtime> {
    Runtime::new(Limits::default(), None).expect("the wasm runtime starts")
}

/// The limits of [`strict_runtime`].
pub const STRICT_LIMITS: Limits = Limits {
    memory_bytes: 64 << 20,
    call_budget: std::time::Duration::from_millis(200),
    sandboxes: 256,
    sandbox_wait: std::time::Duration::from_millis(200),
};

/// A runtime with a small memory cap and a short time budget, for misbehaving plugins.
pub fn strict_runtime() -> Arc<Runtime> {
    Runtime::new(STRICT_LIMITS, None).expect("the wasm runtime starts")
}

pub mod backend_fixture;
pub mod fake_hub;
pub mod http;
pub mod sdk;
pub mod tiny;

/// A tool offered to a model: `parameters` is its JSON Schema.
pub fn tool(name: &str, parameters: serde_json::Value) -> plugboard::adapter::Tool {
    plugboard::adapter::Tool {
        name: name.into(),
        description: None,
        parameters: parameters.to_string(),
    }
}

/// The plain tool set grammar tests start from: `get_weather` (a required city, an enum, an
/// optional boolean) and `get_time`.
pub fn weather_tools() -> Vec<plugboard::adapter::Tool> {
    use serde_json::json;
    vec![
        tool(
            "get_weather",
            json!({"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}, "metric": {"type": "boolean"}}, "required": ["city"]}),
        ),
        tool(
            "get_time",
            json!({"type": "object", "properties": {"tz": {"type": "string"}}}),
        ),
    ]
}

/// The test models (see scripts/fetch_test_models.py). Without them a test is skipped with a
/// loud message, except in CI, where they must be present.
pub mod models {
    use std::path::PathBuf;

    fn find(file: &str) -> Option<PathBuf> {
        let dir = std::env::var_os("PLUGBOARD_MODELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| super::root().join("models"));
        let path = dir.join(file);
        if path.is_file() {
            return Some(path);
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "test model {} is missing in CI: run scripts/fetch_test_models.py",
            path.display()
        );
        eprintln!(
            "SKIPPED: test model {} is missing; run scripts/fetch_test_models.py",
            path.display()
        );
        None
    }

    /// Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M.
    pub fn qwen() -> Option<PathBuf> {
        find("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    }

    /// Gemma 3 270M (base), GGUF Q4_K_M.
    pub fn gemma() -> Option<PathBuf> {
        find("gemma-3-270m-q4_k_m.gguf")
    }

    /// The Qwen test model loaded on the engine with default options.
    pub fn qwen_engine() -> Option<std::sync::Arc<plugboard::engine::Engine>> {
        let path = qwen()?;
        let options = plugboard::engine::EngineOptions::default();
        Some(plugboard::engine::Engine::load(&path, &options).expect("the Qwen test model loads"))
    }
}

/// A `plugboard serve` process on an ephemeral loopback port, stopped on drop.
pub struct TestServer {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The server's log so far.
    pub log: Arc<std::sync::Mutex<String>>,
}

impl TestServer {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `plugboard serve` with these extra arguments and waits until it listens.
    pub fn start(args: &[&str]) -> TestServer {
        TestServer::start_with_env(args, &[])
    }

    /// Starts `plugboard serve` with these extra arguments and environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        use std::io::BufRead;
        let mut child = Command::new(plugboard_bin())
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("plugboard serve starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(addr) = line.strip_prefix("plugboard: serving on ") {
                    let _ = tx.send(addr.to_string());
                }
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let base = match rx.recv_timeout(std::time::Duration::from_secs(300)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "plugboard serve did not start:\n{}",
                    log.lock().map(|l| l.clone()).unwrap_or_default()
                );
            }
        };
        TestServer { child, base, log }
    }

    /// Runs a Python client script from tests/clients with the server's URL first; returns the
    /// JSON it prints.
    pub fn run_client(&self, script: &str, args: &[&str]) -> serde_json::Value {
        let mut command = Command::new("python3");
        command.arg(root().join("tests/clients").join(script));
        self.run_python(script, command, args)
    }

    /// Runs a Python script given inline (`python3 -c`), the same way.
    pub fn run_inline(&self, script: &str, args: &[&str]) -> serde_json::Value {
        let mut command = Command::new("python3");
        command.args(["-c", script]);
        self.run_python("an inline script", command, args)
    }

    fn run_python(&self, name: &str, mut command: Command, args: &[&str]) -> serde_json::Value {
        let output = command
            .arg(&self.base)
            .args(args)
            .output()
            .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{name} failed:\n{stderr}\nserver log:\n{}",
            self.log.lock().map(|l| l.clone()).unwrap_or_default()
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{name} printed no JSON ({e}):\n{stdout}\n{stderr}"))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
