//! Builds every adapter under `plugins/` for `wasm32-wasip2` and embeds it, with its fixtures,
//! into the binary: a fresh `cargo build` serves all built-in adapters with no extra step.

use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";

fn package_name(manifest: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest).ok()?;
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("name").map(str::trim))
        .and_then(|l| l.strip_prefix('='))
        .map(|l| l.trim().trim_matches('"').to_string())
}

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("host/ lives in the workspace")
        .to_path_buf();
    for watched in ["plugins", "sdk/rust", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("plugins");

    let mut plugins: Vec<(String, String, PathBuf)> = std::fs::read_dir(root.join("plugins"))
        .expect("plugins/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|dir| {
            let package = package_name(&dir.join("Cargo.toml"))?;
            let name = dir.file_name()?.to_string_lossy().into_owned();
            Some((name, package, dir))
        })
        .collect();
    plugins.sort();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .args([
            "build",
            "--target",
            WASM_TARGET,
            "--profile",
            PROFILE,
            "--target-dir",
        ])
        .arg(&target_dir);
    for (_, package, _) in &plugins {
        command.args(["-p", package]);
    }
    // The outer build's flags (native CPU features, clippy as a wrapper) do not apply to wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        command.env_remove(var);
    }
    let output = command
        .output()
        .expect("cannot run cargo to build the plugins");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint =
            if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
                "\nhint: run `rustup target add wasm32-wasip2`"
            } else {
                ""
            };
        panic!("building the built-in adapters for {WASM_TARGET} failed:\n{stderr}{hint}");
    }

    let out_dir = target_dir.join(WASM_TARGET).join(PROFILE);
    let mut code = String::from(
        "/// Every built-in adapter, by folder name.\npub static ALL: &[Builtin] = &[\n",
    );
    for (name, package, dir) in &plugins {
        let wasm = out_dir.join(format!("{}.wasm", package.replace('-', "_")));
        let mut fixture_files: Vec<PathBuf> = std::fs::read_dir(dir.join("fixtures"))
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        fixture_files.retain(|p| p.extension().is_some_and(|e| e == "jsonl"));
        fixture_files.sort();
        let fixtures: Vec<String> = fixture_files
            .iter()
            .map(|p| format!("include_str!({:?})", p.display().to_string()))
            .collect();
        let fixtures = if fixtures.is_empty() {
            "\"\"".to_string()
        } else {
            format!("concat!({})", fixtures.join(", \"\\n\", "))
        };
        code.push_str(&format!(
            "    Builtin {{ name: {name:?}, wasm: include_bytes!({:?}), fixtures: {fixtures} }},\n",
            wasm.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("builtin_plugins.rs");
    std::fs::write(out, code).expect("cannot write builtin_plugins.rs");
}
