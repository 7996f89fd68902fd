//! The soak script, small: 16 clients for 30 s of mixed requests (streamed, whole, tool calls,
//! Ollama, token ids, cancelled streams, malformed and oversized bodies) while the tool-use
//! adapter is replaced every few seconds by a good build and a broken file, and a second
//! model loads and unloads. No failure but the documented answers, the server alive, nothing
//! left in flight, RSS within 10 % of warm-up. By hand, larger: `scripts/soak.py --clients 32
//! --seconds 600`.

use plugboard_tests::{models, plugboard_bin, root, test_plugins};

#[test]
fn sixteen_clients_for_thirty_seconds_with_swaps_and_loads_fail_nothing() {
    let (Some(qwen), Some(_gemma)) = (models::qwen(), models::gemma()) else {
        return;
    };
    let output = std::process::Command::new("python3")
        .arg(root().join("scripts/soak.py"))
        .args(["--clients", "16", "--seconds", "30", "--binary"])
        .arg(plugboard_bin())
        .arg("--models-dir")
        .arg(qwen.parent().expect("a folder"))
        .arg("--adapter-wasm")
        .arg(test_plugins().join("tool-use.wasm"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON report");
    assert_eq!(report["failure_count"], 0, "{report:#}");
    assert_eq!(report["server_alive"], true, "{report:#}");
    assert_eq!(report["in_flight_at_end"], 0.0, "{report:#}");
    // What ran, not how fast (the suite's other tests share the cores): at least as many
    // answers as clients, and the adapter swaps and the second model's loads, which run on timers, ran.
    assert!(report["requests"].as_u64().unwrap_or(0) >= 16, "{report:#}");
    for timed in ["swap:good", "swap:broken", "second_model:200"] {
        assert!(
            report["outcomes"][timed].as_u64().unwrap_or(0) >= 1,
            "{timed}: {report:#}"
        );
    }
    // RSS after warm-up, and threads: the script's own limits, named here so that a failure
    // says which one.
    let growth = report["rss_growth"].as_f64().unwrap_or(f64::MAX);
    assert!(
        growth <= 0.10,
        "RSS grew {growth:.3} after warm-up: {report:#}"
    );
    let threads = |at: &str| report[at]["threads"].as_u64().unwrap_or(u64::MAX);
    assert!(
        threads("end") <= threads("warm").saturating_add(4),
        "threads grew: {report:#}"
    );
    assert!(output.status.success(), "{report:#}");
}
