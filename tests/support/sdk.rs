//! Adapters written with the JavaScript, Python and C SDKs, built for real with their
//! toolchains (installed by scripts/setup_sdks.sh), for the language tests and the plugins
//! benchmark. Each component is built once per process (the JS and Python builds take 10–20 s).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use super::{root, target_dir};

/// The languages with an SDK folder of their own, as `plugins new --lang` names them.
pub const LANGS: [&str; 3] = ["js", "python", "c"];

/// Where the SDK components and their compile cache are built.
pub fn work_dir() -> PathBuf {
    let dir = target_dir().join("sdk-tests");
    std::fs::create_dir_all(&dir).expect("the work folder can be created");
    dir
}

/// A command without the outer cargo's flags, which are not meant for nested builds.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    c.current_dir(root());
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
    ] {
        c.env_remove(var);
    }
    c
}

/// Runs a command to its end and returns its standard output; panics, with both outputs, when
/// it fails.
pub fn run(mut c: Command, what: &str) -> String {
    let output = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// plugboard-c-tool, built once per process.
fn c_tool() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let mut c = command(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        c.args(["build", "-q", "-p", "plugboard-c-tool"]);
        run(c, "building plugboard-c-tool");
        root().join("target/debug/plugboard-c-tool")
    })
}

/// Runs a language's build script with the toolchains the setup script installed.
pub fn build(script: &Path, args: &[&Path], what: &str) {
    let mut c = command(script);
    c.args(args)
        .env("PLUGBOARD_C_TOOL", c_tool())
        .env("PLUGBOARD_NODE_MODULES", root().join("sdk/js/node_modules"))
        .env("CARGO_TARGET_DIR", work_dir().join("rust-scaffold-target"));
    run(c, what);
}

/// The tool-use example of a language (`sdk/LANG/examples/tool-use`), built once per process.
pub fn example(lang: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    // One build at a time: the lock is held across the build.
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    built
        .entry(lang.to_string())
        .or_insert_with(|| {
            let out = work_dir().join(format!("tool-use-{lang}.wasm"));
            let sdk = root().join("sdk").join(lang);
            build(
                &sdk.join("build.sh"),
                &[&sdk.join("examples/tool-use"), &out],
                &format!("the {lang} example"),
            );
            out
        })
        .clone()
}
