//! `plugboard-c-tool`: the two wasm steps of building a C adapter, without the `wit-bindgen` and
//! `wasm-tools` command-line tools (whose `cargo install` takes a quarter of an hour):
//!
//! - `plugboard-c-tool bindings WIT_DIR OUT_DIR` writes the C bindings of the `model-adapter`
//!   world (`model_adapter.h`, `model_adapter.c`, `model_adapter_component_type.o`), generated
//!   from the WIT at build time so that the contract has one source;
//! - `plugboard-c-tool component CORE.wasm OUT.wasm` wraps a core module that clang and
//!   wasi-libc (WASI preview 1) produced into a component, adapting its preview-1 imports to
//!   WASI 0.2 with the reactor adapter (a library, not a program with `main`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use wit_bindgen_core::Files;
use wit_bindgen_core::wit_parser::Resolve;

/// The world every plugboard adapter exports.
const WORLD: &str = "model-adapter";

const USAGE: &str = "usage:
  plugboard-c-tool bindings WIT_DIR OUT_DIR     C bindings of the model-adapter world
  plugboard-c-tool component CORE.wasm OUT.wasm  a core module (wasi-libc) as a component";

fn bindings(wit: &Path, out: &Path) -> anyhow::Result<()> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .with_context(|| format!("cannot read the WIT in {}", wit.display()))?;
    let world = resolve.select_world(&[package], Some(WORLD))?;
    let mut files = Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for (name, contents) in files.iter() {
        let path = out.join(name);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn component(core: &Path, out: &Path) -> anyhow::Result<()> {
    let module = std::fs::read(core).with_context(|| format!("cannot read {}", core.display()))?;
    let bytes = wit_component::ComponentEncoder::default()
        .module(&module)
        .context("the module carries no component type (link model_adapter_component_type.o)")?
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .validate(true)
        .encode()
        .context("cannot make a component of the module")?;
    std::fs::write(out, bytes).with_context(|| format!("cannot write {}", out.display()))
}

fn run(args: &[String]) -> anyhow::Result<()> {
    match args {
        [command, a, b] if command == "bindings" => bindings(&PathBuf::from(a), &PathBuf::from(b)),
        [command, a, b] if command == "component" => {
            component(&PathBuf::from(a), &PathBuf::from(b))
        }
        _ => bail!("{USAGE}"),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plugboard-c-tool: {e:#}");
            ExitCode::FAILURE
        }
    }
}
