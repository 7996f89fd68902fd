//! Hot swap: replacing a plugin file while threads call it without pause fails no call, and
//! the new version answers (how soon: `cargo bench --bench plugins`). Files that are garbage,
//! built against another contract version, or fail their own fixtures never replace the
//! serving version.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use plugboard::adapter::ParseOptions;
use plugboard::plugins::AdapterState;
use plugboard::plugins::{PluginHost, Watcher};
use plugboard_tests::{plugboard_bin, plugin_bytes, runtime};

fn serving_version(host: &PluginHost) -> String {
    host.get("probe")
        .expect("probe serves")
        .info()
        .version
        .clone()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

fn last_error(host: &PluginHost) -> Option<String> {
    host.list()
        .into_iter()
        .find(|e| e.name == "probe")
        .and_then(|e| e.last_error)
        .map(|f| f.message)
}

/// Replaces a file the way `cp` does: truncate, then write.
fn overwrite(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("the plugin file is writable");
}

#[test]
fn swapping_under_load_fails_no_call_and_bad_files_never_replace_the_serving_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("probe.wasm");
    let versions = [
        (plugin_bytes("probe-v1"), "1.0.0"),
        (plugin_bytes("probe-v2"), "2.0.0"),
    ];
    overwrite(&path, &versions[0].0);
    let host = PluginHost::new(runtime(), false, Some(dir.path().to_path_buf()));
    let _watcher = Watcher::start(host.clone()).expect("the watcher starts");
    assert_eq!(serving_version(&host), "1.0.0");

    let stop = AtomicBool::new(false);
    let calls = AtomicUsize::new(0);
    let failures = AtomicUsize::new(0);
    let mut latencies = Vec::new();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let plugin = host.get("probe").expect("probe serves");
                    let expected = if plugin.info().version == "1.0.0" {
                        "v1"
                    } else {
                        "v2"
                    };
                    match plugin.parse("x", &ParseOptions::default()) {
                        Ok(parsed) if parsed.content.as_deref() == Some(expected) => {
                            calls.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        for round in 1..=10 {
            let (bytes, version) = &versions[round % 2];
            std::thread::sleep(Duration::from_millis(50));
            let written = Instant::now();
            overwrite(&path, bytes);
            wait_for(
                &format!("version {version}"),
                Duration::from_secs(5),
                || serving_version(&host) == *version,
            );
            latencies.push(written.elapsed());
        }
        stop.store(true, Ordering::Relaxed);
    });
    latencies.sort();
    eprintln!(
        "hot swap: {} calls, {} failed; swap latency median {:?}, max {:?}",
        calls.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no call may fail during swaps"
    );
    assert!(calls.load(Ordering::Relaxed) > 100);
    // A hang detector, not a speed target: beside the rest of the suite on two cores a swap can
    // take a second; the swap latency target lives in `cargo bench --bench plugins`.
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(10)),
        "each swap within 10 s: {latencies:?}"
    );
    assert_eq!(serving_version(&host), "1.0.0");
    let history = host
        .list()
        .into_iter()
        .find(|e| e.name == "probe")
        .expect("probe listed")
        .history;
    assert_eq!(
        history.len(),
        11,
        "the initial load and 10 swaps are recorded"
    );

    // Garbage never replaces the serving version.
    overwrite(&path, b"this is not wasm");
    wait_for("the garbage to be refused", Duration::from_secs(5), || {
        last_error(&host).is_some_and(|m| m.contains("not a valid wasm component"))
    });
    assert_eq!(serving_version(&host), "1.0.0");

    // Neither does a component built against a contract this host does not support.
    overwrite(&path, &plugin_bytes("future-contract"));
    wait_for(
        "the future contract to be refused",
        Duration::from_secs(5),
        || last_error(&host).is_some_and(|m| m.contains("plugboard:adapter@9.0.0")),
    );
    assert_eq!(serving_version(&host), "1.0.0");

    // Nor a version that fails its own fixtures: these expect version 1's answer.
    std::fs::write(
        PluginHost::fixtures_path(&path),
        r#"{"name": "answers v1", "output": "x", "expect": {"content": "v1"}}"#,
    )
    .expect("fixtures written");
    overwrite(&path, &versions[1].0);
    wait_for("v2 to fail its fixtures", Duration::from_secs(5), || {
        last_error(&host)
            .is_some_and(|m| m.contains("failed its fixtures") && m.contains("answers v1"))
    });
    assert_eq!(serving_version(&host), "1.0.0");
    let entry = host
        .list()
        .into_iter()
        .find(|e| e.name == "probe")
        .expect("probe listed");
    assert_eq!(entry.state, AdapterState::UpdateFailed);

    // `plugboard plugins list` shows the failing file and why.
    let output = std::process::Command::new(plugboard_bin())
        .args([
            "plugins",
            "list",
            "--no-builtins",
            "--no-cache",
            "--plugins",
        ])
        .arg(dir.path())
        .output()
        .expect("plugboard runs");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{table}");
    assert!(
        table.contains("failed") && table.contains("failed its fixtures"),
        "{table}"
    );

    // A good version, fixtures passing, serves again and clears the error.
    overwrite(&path, &versions[0].0);
    wait_for("v1 to load again", Duration::from_secs(5), || {
        last_error(&host).is_none()
    });

    // Removing the file unloads the adapter.
    std::fs::remove_file(&path).expect("removed");
    wait_for("probe to unload", Duration::from_secs(5), || {
        host.get("probe").is_none()
    });
}

#[test]
fn a_file_overrides_the_builtin_of_the_same_name_until_it_is_removed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("my-tool-use.wasm");
    std::fs::write(&path, plugin_bytes("tool-use")).expect("written");
    let host = PluginHost::new(runtime(), true, Some(dir.path().to_path_buf()));
    let plugin = host.get("tool-use").expect("tool-use serves");
    assert_eq!(plugin.source().to_string(), path.display().to_string());
    let entry = host
        .list()
        .into_iter()
        .find(|e| e.name == "tool-use")
        .expect("listed");
    assert_eq!(entry.overrides.as_deref(), Some("built-in:tool-use"));
    host.remove_file(&path);
    let plugin = host.get("tool-use").expect("the built-in serves again");
    assert_eq!(plugin.source().to_string(), "built-in:tool-use");
}

/// Waits past the debounce for the watcher to act on what just changed, then checks that it
/// stays quiet: no file looked at again and no swap recorded while nothing changes. Returns the
/// adapter's swap history length.
fn settle(host: &PluginHost, watcher: &Watcher, adapter: &str) -> usize {
    let swaps = || {
        host.list()
            .into_iter()
            .find(|e| e.name == adapter)
            .map_or(0, |e| e.history.len())
    };
    std::thread::sleep(Duration::from_millis(800));
    let (checks, history) = (watcher.checks(), swaps());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        watcher.checks(),
        checks,
        "the watcher keeps looking at files while nothing changes"
    );
    assert_eq!(swaps(), history, "swaps recorded while nothing changes");
    history
}

fn source_of(host: &PluginHost, adapter: &str) -> Option<String> {
    host.list()
        .into_iter()
        .find(|e| e.name == adapter && e.state != AdapterState::NotLoaded)
        .map(|e| e.source)
}

#[test]
fn a_plugin_dropped_in_with_its_fixtures_swaps_once_and_its_removal_restores_the_builtin_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = PluginHost::new(runtime(), true, Some(dir.path().to_path_buf()));
    let watcher = Watcher::start(host.clone()).expect("the watcher starts");
    let wasm = dir.path().join("tool-use.wasm");
    let fixtures = PluginHost::fixtures_path(&wasm);

    // As the README's "Write an adapter" says: copy the adapter, then its fixtures.
    std::fs::write(&wasm, plugin_bytes("tool-use")).expect("copied");
    std::fs::copy(
        plugboard_tests::root().join("plugins/tool-use/fixtures/tool-use.jsonl"),
        &fixtures,
    )
    .expect("copied");
    let file = wasm.display().to_string();
    wait_for("the file to serve", Duration::from_secs(10), || {
        source_of(&host, "tool-use").as_deref() == Some(file.as_str())
    });
    let swaps = settle(&host, &watcher, "tool-use");
    assert!(
        (1..=2).contains(&swaps),
        "one swap, two if the files arrived apart: {swaps}"
    );
    assert!(last_error(&host).is_none());

    // Removed: the built-in serves again, once.
    std::fs::remove_file(&wasm).expect("removed");
    wait_for("the file to unload", Duration::from_secs(10), || {
        source_of(&host, "tool-use").is_none()
    });
    let builtin = host.get("tool-use").expect("the built-in serves again");
    assert_eq!(builtin.source().to_string(), "built-in:tool-use");
    assert_eq!(settle(&host, &watcher, "tool-use"), swaps + 1);

    // The fixtures left behind alone are no plugin, and changing them loads nothing.
    std::fs::write(&fixtures, "").expect("written");
    assert_eq!(settle(&host, &watcher, "tool-use"), swaps + 1);
}

#[test]
fn an_editor_save_swaps_once_and_a_fixtures_change_rechecks_without_swapping() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("probe.wasm");
    overwrite(&path, &plugin_bytes("probe-v1"));
    let host = PluginHost::new(runtime(), false, Some(dir.path().to_path_buf()));
    let watcher = Watcher::start(host.clone()).expect("the watcher starts");
    assert_eq!(settle(&host, &watcher, "probe"), 1);

    // An editor saves to a temporary name and renames it over the file.
    let temporary = dir.path().join(".probe.wasm.swp");
    overwrite(&temporary, &plugin_bytes("probe-v2"));
    std::fs::rename(&temporary, &path).expect("renamed");
    wait_for("version 2", Duration::from_secs(10), || {
        serving_version(&host) == "2.0.0"
    });
    assert_eq!(settle(&host, &watcher, "probe"), 2);

    // The same bytes written again, and the file touched: no content changed, nothing swaps.
    overwrite(&path, &plugin_bytes("probe-v2"));
    let file = std::fs::File::options()
        .append(true)
        .open(&path)
        .expect("opens");
    file.set_modified(std::time::SystemTime::now())
        .expect("touched");
    drop(file);
    assert_eq!(settle(&host, &watcher, "probe"), 2);

    // New fixtures that the serving version passes: rechecked, not swapped.
    let checks = watcher.checks();
    std::fs::write(
        PluginHost::fixtures_path(&path),
        r#"{"name": "answers v2", "output": "x", "expect": {"content": "v2"}}"#,
    )
    .expect("fixtures written");
    assert_eq!(settle(&host, &watcher, "probe"), 2);
    assert!(
        (1..=2).contains(&(watcher.checks() - checks)),
        "the fixtures change is looked at once (twice if its events arrived apart)"
    );
    assert!(last_error(&host).is_none());

    // New fixtures that it fails: refused once, still serving, and quiet afterwards.
    std::fs::write(
        PluginHost::fixtures_path(&path),
        r#"{"name": "answers v1", "output": "x", "expect": {"content": "v1"}}"#,
    )
    .expect("fixtures written");
    wait_for("the fixtures to fail", Duration::from_secs(10), || {
        last_error(&host).is_some_and(|m| m.contains("answers v1"))
    });
    assert_eq!(settle(&host, &watcher, "probe"), 2);
    assert_eq!(serving_version(&host), "2.0.0");
}

/// A new version dropped in while requests hold every sandbox lands as soon as one is free:
/// its checks go before waiting requests, and a load put off because none came free in time
/// is tried again, not refused.
#[test]
fn a_swap_while_every_sandbox_is_busy_lands_once_one_is_free() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("probe.wasm");
    overwrite(&path, &plugin_bytes("probe-v1"));
    let runtime = plugboard::plugins::Runtime::new(
        plugboard::plugins::Limits {
            sandboxes: 1,
            // A check waits thirty times this (0.6 s) before its load is put off.
            sandbox_wait: Duration::from_millis(20),
            ..Default::default()
        },
        None,
    )
    .expect("runtime");
    let host = PluginHost::new(runtime, false, Some(dir.path().to_path_buf()));
    let watcher = Watcher::start(host.clone()).expect("the watcher starts");
    let held = host.get("probe").expect("probe serves").session();
    let held = held.expect("the only sandbox");
    overwrite(&path, &plugin_bytes("probe-v2"));
    // Looked at, put off (past 0.6 s), looked at again.
    wait_for("the load to be retried", Duration::from_secs(30), || {
        watcher.checks() >= 2
    });
    assert_eq!(serving_version(&host), "1.0.0");
    assert_eq!(last_error(&host), None, "a load put off is no failure");
    drop(held);
    wait_for("version 2.0.0", Duration::from_secs(30), || {
        serving_version(&host) == "2.0.0"
    });
    host.get("probe")
        .expect("probe serves")
        .parse("x", &ParseOptions::default())
        .expect("the new version serves requests");
}

/// On the server's tiered runtime, a big version replaced before its optimising compile
/// started is not compiled: the cores go to the version that serves.
#[test]
fn a_version_replaced_before_its_optimising_compile_is_not_compiled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("probe.wasm");
    let runtime = plugboard::plugins::Runtime::tiered(Default::default(), None).expect("runtime");
    let host = PluginHost::new(
        std::sync::Arc::clone(&runtime),
        false,
        Some(dir.path().to_path_buf()),
    );
    // Past the quick tier's threshold.
    let big = |name: &str| plugboard_tests::with_custom_section(&plugin_bytes(name), &[0; 3 << 20]);
    let (v1, v2) = {
        let _held_back = runtime.pause_optimising();
        overwrite(&path, &big("probe-v1"));
        let v1 = host.reload_file(&path).expect("version 1 loads");
        overwrite(&path, &big("probe-v2"));
        let v2 = host.reload_file(&path).expect("version 2 loads");
        assert!(!v1.optimised() && !v2.optimised(), "quick code first");
        (v1, v2)
    };
    wait_for(
        "version 2's optimised code",
        Duration::from_secs(120),
        || v2.optimised(),
    );
    // One compile at a time: whichever order they were queued in, version 1's is over by now.
    assert!(!v1.optimised(), "the replaced version was compiled");
    assert_eq!(serving_version(&host), "2.0.0");
}
