//! Writes the seed corpus of both targets from the adapters' fixture outputs:
//! `cargo run --example seed` (from `fuzz/`; an example, so that `cargo fuzz build` leaves it
//! uninstrumented), then `cargo fuzz run parse` finds it in `corpus/parse/`.

use plugboard_fuzz::{ADAPTERS, encode, fixture_files, flags};
use plugboard_sdk::testing::fixtures::parse_cases;

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut written = 0;
    for (index, adapter) in ADAPTERS.iter().enumerate() {
        let files = fixture_files(adapter.name);
        let files: Vec<&str> = files.iter().map(String::as_str).collect();
        for (n, case) in parse_cases(&files).into_iter().enumerate() {
            let data = encode(index, flags(&case.options), n as u8, &case.output);
            for target in ["parse", "stream"] {
                let dir = root.join(target);
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join(format!("{}-{n:03}", adapter.name)), &data)?;
            }
            written += 1;
        }
    }
    println!("{written} seeds written to {}", root.display());
    Ok(())
}
