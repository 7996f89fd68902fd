//! `plugboard plugins new NAME --lang rust|js|python|c`: a new adapter folder that builds and
//! passes `plugboard plugins check` as generated: the template source, the SDK files it needs, a
//! copy of the contract's WIT (bindings are generated from it at build time), fixtures and a
//! build script.
//!
//! Every file is embedded from the repository's `sdk/` folders, so the scaffolds and the SDKs
//! never drift apart; the WIT copy is the contract this binary speaks.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::ValueEnum;

/// The language of a new adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Js,
    Python,
    C,
}

/// One file of a scaffold: where it goes, what it holds, and whether it is a script.
struct File {
    path: &'static str,
    contents: &'static str,
    executable: bool,
}

const fn file(path: &'static str, contents: &'static str) -> File {
    File {
        path,
        contents,
        executable: false,
    }
}

const fn script(path: &'static str, contents: &'static str) -> File {
    File {
        path,
        contents,
        executable: true,
    }
}

macro_rules! sdk {
    ($path:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk/", $path))
    };
}

const WIT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../wit/v0.2/adapter.wit"
));

/// The placeholder for the adapter's name in the templates.
const NAME: &str = "__NAME__";
/// The placeholder for the path of the plugboard-sdk crate (Rust).
const SDK: &str = "__SDK__";

fn files(lang: Lang) -> Vec<File> {
    match lang {
        Lang::Rust => vec![
            file("Cargo.toml", sdk!("templates/rust/Cargo.toml")),
            file("src/lib.rs", sdk!("templates/rust/lib.rs")),
            script("build.sh", sdk!("templates/rust/build.sh")),
        ],
        Lang::Js => vec![
            file("adapter.js", sdk!("js/template/adapter.js")),
            file("plugboard.js", sdk!("js/plugboard.js")),
            file("package.json", sdk!("js/package.json")),
            file("wit/adapter.wit", WIT),
            script("build.sh", sdk!("js/build.sh")),
        ],
        Lang::Python => vec![
            file("main.py", sdk!("python/template/main.py")),
            file("plugboard.py", sdk!("python/plugboard.py")),
            file("glue/app.py", sdk!("python/glue/app.py")),
            file("glue/adapter.py", sdk!("python/glue/adapter.py")),
            file("wit/adapter.wit", WIT),
            script("build.sh", sdk!("python/build.sh")),
        ],
        Lang::C => vec![
            file("adapter.c", sdk!("c/template/adapter.c")),
            file("plugboard.c", sdk!("c/plugboard.c")),
            file("plugboard.h", sdk!("c/plugboard.h")),
            file("wit/adapter.wit", WIT),
            script("build.sh", sdk!("c/build.sh")),
        ],
    }
}

/// Adapter names become file names, crate names and the `name` the host routes by: lower-case
/// letters, digits and dashes, starting with a letter.
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        bail!(
            "'{name}' is not a valid adapter name: use lower-case letters, digits and dashes, starting with a letter"
        );
    }
    Ok(())
}

/// The plugboard-sdk crate a Rust scaffold depends on: the given folder, else the one in the
/// checkout this binary was built from.
fn rust_sdk(sdk: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let sdk = sdk.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/rust"));
    let manifest = sdk.join("Cargo.toml");
    anyhow::ensure!(
        manifest.is_file(),
        "the plugboard-sdk crate is not at {} (pass --sdk PATH/TO/sdk/rust)",
        sdk.display()
    );
    sdk.canonicalize()
        .with_context(|| format!("cannot resolve {}", sdk.display()))
}

/// Writes the scaffold for `name` into `parent/name`; returns the folder.
pub fn create(
    name: &str,
    lang: Lang,
    parent: &Path,
    sdk: Option<PathBuf>,
) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let dest = parent.join(name);
    if dest
        .read_dir()
        .is_ok_and(|mut entries| entries.next().is_some())
    {
        bail!("{} exists and is not empty", dest.display());
    }
    let sdk_path = match lang {
        Lang::Rust => rust_sdk(sdk)?.display().to_string(),
        _ => String::new(),
    };
    let fixtures = format!("{name}.fixtures.jsonl");
    let all = files(lang)
        .into_iter()
        .map(|f| (f.path.to_string(), f.contents, f.executable))
        .chain(std::iter::once((
            fixtures,
            sdk!("templates/fixtures.jsonl"),
            false,
        )));
    for (path, contents, executable) in all {
        let target = dest.join(&path);
        if let Some(folder) = target.parent() {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
        }
        let text = contents.replace(NAME, name).replace(SDK, &sdk_path);
        std::fs::write(&target, text)
            .with_context(|| format!("cannot write {}", target.display()))?;
        if executable {
            make_executable(&target)?;
        }
    }
    Ok(dest)
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// What to install once before the first build, per language.
fn needs(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "rustup target add wasm32-wasip2",
        Lang::Js => "node and npm (build.sh installs componentize-js on first use)",
        Lang::Python => "pip install componentize-py==0.25.1",
        Lang::C => {
            "clang, lld, wasi-libc (apt install clang lld wasi-libc libclang-rt-14-dev-wasm32) and plugboard-c-tool (cargo install --path sdk/c/tool, or PLUGBOARD_C_TOOL)"
        }
    }
}

pub fn run(
    name: &str,
    lang: Lang,
    dir: Option<PathBuf>,
    sdk: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let parent = dir.unwrap_or_else(|| PathBuf::from("."));
    let dest = create(name, lang, &parent, sdk)?;
    let shown = dest.display();
    println!("created {shown}");
    println!("needs: {}", needs(lang));
    println!("build: {shown}/build.sh");
    println!("check: plugboard plugins check {shown}/{name}.wasm");
    println!("serve: copy {name}.wasm and {name}.fixtures.jsonl into the plugin folder");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("my-family2").is_ok());
        for bad in ["", "My", "2x", "a_b", "a-", "a b", "../x"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_language_writes_fixtures_and_a_build_script() {
        let dir = std::env::temp_dir().join(format!("plugboard-scaffold-{}", std::process::id()));
        for (i, lang) in [Lang::Js, Lang::Python, Lang::C].into_iter().enumerate() {
            let name = format!("fam{i}");
            let dest = create(&name, lang, &dir, None).expect("scaffold");
            assert!(dest.join(format!("{name}.fixtures.jsonl")).is_file());
            assert!(dest.join("build.sh").is_file());
            assert!(dest.join("wit/adapter.wit").is_file());
            assert!(create(&name, lang, &dir, None).is_err(), "never overwrites");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
