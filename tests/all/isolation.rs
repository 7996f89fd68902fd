//! A plugin that loops, panics, exhausts its memory or returns garbage fails only its own call,
//! with an error that names the plugin and the reason; the next call works. The same holds for
//! the code of both compilers: Winch's quick code, which a big component runs first on a
//! tiered runtime, and Cranelift's.

use std::sync::Arc;

use plugboard::adapter::{ParseOptions, StreamEvent};
use plugboard::plugins::{CallError, PluginSource, Runtime};
use plugboard_tests::{STRICT_LIMITS, plugin_bytes, strict_runtime, with_custom_section};

fn check_isolated(name: &str, expected: impl Fn(&CallError) -> bool) {
    check_isolated_on(name, false, &expected);
    check_isolated_on(name, true, &expected);
}

/// `quick`: the plugin, padded past the quick tier's threshold, is loaded by a tiered runtime
/// and the bad call runs on Winch's code.
fn check_isolated_on(name: &str, quick: bool, expected: &dyn Fn(&CallError) -> bool) {
    let (runtime, wasm) = if quick {
        let runtime = Runtime::tiered(STRICT_LIMITS, None).expect("runtime");
        (
            runtime,
            with_custom_section(&plugin_bytes(name), &[0; 3 << 20]),
        )
    } else {
        (strict_runtime(), plugin_bytes(name))
    };
    let paused = runtime.pause_optimising();
    let plugin = runtime
        .load(&wasm, PluginSource::File(format!("{name}.wasm").into()))
        .unwrap_or_else(|e| panic!("{name} loads: {e}"));
    let options = ParseOptions::default();

    let mut session = plugin.session().expect("a session");
    assert_eq!(plugin.optimised(), !quick, "{name}");
    drop(paused);
    let error = session
        .parse("boom", &options)
        .expect_err("the bad call fails");
    assert!(expected(&error), "{name}: unexpected error {error:?}");
    let message = error.to_string();
    assert!(
        message.contains("misbehave 0.0.1"),
        "{name}: the error names the plugin: {message}"
    );
    assert_eq!(plugin.faults(), 1, "{name}: the fault is counted");

    // The next call, on the same plugin version, works.
    let parsed = plugin
        .parse("hello", &options)
        .expect("the next call works");
    assert_eq!(parsed.content.as_deref(), Some("hello"));

    // The same holds for a stream: the failing stream is done for, a new one works.
    let mut stream = plugin.stream(&options).expect("a stream starts");
    assert!(stream.push("boom").is_err(), "{name}: the bad push fails");
    assert!(
        stream.push("more").is_err(),
        "{name}: a failed stream stays failed"
    );
    let mut stream = plugin.stream(&options).expect("a new stream starts");
    let events = stream.push("fine").expect("a new stream works");
    assert_eq!(events.len(), 1);
}

#[test]
fn an_endless_loop_times_out() {
    check_isolated("loops", |e| {
        matches!(e, CallError::Timeout { budget_ms: 200, .. })
    });
}

#[test]
fn a_panic_is_a_crash_with_its_message() {
    check_isolated(
        "panics",
        |e| matches!(e, CallError::Trap { reason, .. } if reason.contains("unreachable")),
    );
}

#[test]
fn allocating_a_gibibyte_runs_out_of_memory() {
    check_isolated("allocates", |e| {
        matches!(e, CallError::OutOfMemory { limit_mib: 64, .. })
    });
}

#[test]
fn garbage_results_are_rejected() {
    check_isolated("garbage", |e| matches!(e, CallError::Malformed { .. }));
}

#[test]
fn many_threads_share_one_plugin_while_one_of_them_crashes_it() {
    let runtime = strict_runtime();
    let plugin = runtime
        .load(
            &plugin_bytes("panics"),
            PluginSource::File("panics.wasm".into()),
        )
        .expect("loads");
    std::thread::scope(|s| {
        for t in 0..4 {
            let plugin = &plugin;
            s.spawn(move || {
                for i in 0..200 {
                    let text = if t == 0 && i % 50 == 0 {
                        "boom".to_string()
                    } else {
                        format!("{t}-{i}")
                    };
                    let result = plugin.parse(&text, &ParseOptions::default());
                    if text == "boom" {
                        assert!(result.is_err());
                    } else {
                        assert_eq!(
                            result.expect("good calls succeed").content.as_deref(),
                            Some(text.as_str())
                        );
                    }
                }
            });
        }
    });
    assert_eq!(plugin.faults(), 4);
}

/// Sandboxes come from a pool and their memory is reset in place between requests: what one
/// request left in memory is never seen by the next, on either tier, while a request's own
/// calls share their instance.
#[test]
fn no_state_survives_into_the_next_request() {
    for quick in [false, true] {
        let (runtime, wasm) = if quick {
            let runtime = Runtime::tiered(STRICT_LIMITS, None).expect("runtime");
            (
                runtime,
                with_custom_section(&plugin_bytes("panics"), &[0; 3 << 20]),
            )
        } else {
            (strict_runtime(), plugin_bytes("panics"))
        };
        // Quick code stays for the whole loop.
        let _paused = runtime.pause_optimising();
        let plugin = runtime
            .load(&wasm, PluginSource::File("panics.wasm".into()))
            .expect("loads");
        assert_eq!(plugin.optimised(), !quick);
        let options = ParseOptions::default();
        for request in 0..50 {
            let mut stream = plugin.stream(&options).expect("a stream starts");
            let mut count = || match stream.push("count").expect("pushes").as_slice() {
                [StreamEvent::Content { text }] => text.clone(),
                other => panic!("{other:?}"),
            };
            assert_eq!(count(), "push 1", "request {request} (quick: {quick})");
            assert_eq!(count(), "push 2", "request {request} (quick: {quick})");
            // Dirty more than the memory kept resident, and crash: the next request still
            // starts clean.
            if request % 10 == 0 {
                assert!(plugin.parse(&"boom ".repeat(1 << 18), &options).is_err());
            }
        }
    }
}

/// A request past the pool's sandboxes waits for one, is refused as busy (not as the
/// plugin's fault) when none comes free, and is served once one is.
#[test]
fn a_request_past_the_sandboxes_is_refused_as_busy() {
    let runtime = Runtime::new(
        plugboard::plugins::Limits {
            sandboxes: 2,
            sandbox_wait: std::time::Duration::from_secs(1),
            ..STRICT_LIMITS
        },
        None,
    )
    .expect("runtime");
    let plugin = runtime
        .load(
            &plugin_bytes("panics"),
            PluginSource::File("panics.wasm".into()),
        )
        .expect("loads");
    let held = [
        plugin.session().expect("one"),
        plugin.session().expect("two"),
    ];
    let error = plugin
        .session()
        .err()
        .expect("a third is refused after its wait");
    assert!(
        matches!(error, CallError::Busy { sandboxes: 2, .. }),
        "{error:?}"
    );
    assert!(!error.is_fault());
    assert_eq!(plugin.faults(), 0);
    let [one, two] = held;
    let waiting = std::thread::spawn({
        let plugin = Arc::clone(&plugin);
        move || plugin.session().map(drop)
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    drop(one);
    waiting
        .join()
        .unwrap()
        .expect("a request waiting for a sandbox gets the one freed meanwhile");
    drop(two);
}
