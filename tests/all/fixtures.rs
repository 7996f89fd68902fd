//! Every built-in adapter passes its own fixtures: whole outputs, and the same outputs
//! streamed at several chunk sizes.

use plugboard::plugins::PluginHost;
use plugboard::plugins::builtin;
use plugboard::plugins::fixtures;
use plugboard_tests::runtime;

#[test]
fn every_builtin_adapter_passes_its_fixtures() {
    let host = PluginHost::new(runtime(), true, None);
    let mut failures = Vec::new();
    for b in builtin::ALL {
        let plugin = host
            .get(b.name)
            .unwrap_or_else(|| panic!("built-in {} loads", b.name));
        let report = fixtures::run(&plugin, b.fixtures).expect("a sandbox");
        assert!(
            report.cases >= 15,
            "{} ships only {} fixture cases",
            b.name,
            report.cases
        );
        if !report.passed() {
            failures.push(format!("{}: {}", b.name, report.summary()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_wrong_expectation_fails_and_names_the_case() {
    let host = PluginHost::new(runtime(), true, None);
    let plugin = host.get("tool-use").expect("tool-use is built in");
    let report = fixtures::run(
        &plugin,
        r#"{"name": "deliberately wrong", "output": "hi", "expect": {"content": "bye"}}"#,
    )
    .expect("a sandbox");
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].case, "deliberately wrong");
    assert!(report.failures[0].message.contains("\"bye\""));
}
