//! Download speed: the store pulling a model file from a fake hub on loopback (a test double;
//! the hub is not reachable here) against `curl` fetching the same file from the same server,
//! in the same run. The store also hashes what it writes (SHA-256, checked before the file is
//! published): `curl` then `sha256sum` (two passes) and `curl | tee | openssl dgst` (one
//! pass, the same work as the store's) are shown too.
//! A benchmark, not a test: it prints a table.
//!
//! `cargo bench -p plugboard-tests --bench store`

use std::process::Command;
use std::time::Instant;

use plugboard::store::{HubFile, Store, StoreOptions};
use plugboard_tests::fake_hub::FakeHub;
use plugboard_tests::models;

const ROUNDS: usize = 5;
const REPO: &str = "bench/qwen";

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn main() {
    let Some(model) = models::qwen() else { return };
    let file = model
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a name")
        .to_string();
    let hub = FakeHub::start();
    hub.add(REPO, &file, &model, None);
    let size = std::fs::metadata(&model).expect("the model").len() as f64;
    let url = format!("{}/{REPO}/resolve/main/{file}", hub.base);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (mut store_s, mut curl_s, mut curl_sha_s, mut piped_s) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        // Alternating, so that a slow patch of the shared machine hits all three.
        let dir = tempfile::tempdir().expect("a folder");
        let store = Store::new(StoreOptions {
            root: dir.path().to_path_buf(),
            endpoint: hub.base.clone(),
            token: None,
            reserve: 0,
        })
        .expect("a store");
        let started = Instant::now();
        runtime
            .block_on(store.pull_and_wait(HubFile {
                repo: REPO.into(),
                revision: "main".into(),
                file: file.clone(),
            }))
            .expect("pulled");
        store_s.push(started.elapsed().as_secs_f64());
        drop(dir);

        let out = tempfile::tempdir().expect("a folder");
        let target = out.path().join(&file);
        let started = Instant::now();
        let status = Command::new("curl")
            .args(["-s", "-f", "-L", "-o"])
            .arg(&target)
            .arg(&url)
            .status()
            .expect("curl runs");
        assert!(status.success());
        curl_s.push(started.elapsed().as_secs_f64());
        let hashed = Command::new("sha256sum")
            .arg(&target)
            .output()
            .expect("sha256sum runs");
        assert!(hashed.status.success());
        curl_sha_s.push(started.elapsed().as_secs_f64());

        // The same work as the store's in one pass: download, write, hash with OpenSSL.
        let piped = out.path().join("piped.gguf");
        let started = Instant::now();
        let status = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -o pipefail; curl -s -f -L '{url}' | tee '{}' | openssl dgst -sha256 >/dev/null",
                piped.display()
            ))
            .status()
            .expect("bash runs");
        assert!(status.success());
        piped_s.push(started.elapsed().as_secs_f64());
    }
    let (store, curl, curl_sha, piped) = (
        median(store_s),
        median(curl_s),
        median(curl_sha_s),
        median(piped_s),
    );
    let rate = |s: f64| size / s / 1e6;
    println!(
        "{} MB from a fake hub on loopback, medians of {ROUNDS}:",
        size as u64 / 1_000_000
    );
    println!("| | time | MB/s | vs curl |");
    println!("|---|---|---|---|");
    println!("| curl | {curl:.2} s | {:.0} | 1.00× |", rate(curl));
    println!(
        "| curl, then sha256sum | {curl_sha:.2} s | {:.0} | {:.2}× |",
        rate(curl_sha),
        curl_sha / curl
    );
    println!(
        "| curl, tee and openssl dgst -sha256 in one pipe | {piped:.2} s | {:.0} | {:.2}× |",
        rate(piped),
        piped / curl
    );
    println!(
        "| plugboard store (hashed while written, verified, published) | {store:.2} s | {:.0} | {:.2}× ({:.2}× the pipe) |",
        rate(store),
        store / curl,
        store / piped
    );
}
