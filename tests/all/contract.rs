//! Components that are not adapters of a supported contract version are refused with a
//! message that says why.

use plugboard::plugins::LoadError;
use plugboard::plugins::PluginSource;
use plugboard_tests::{plugin_bytes, runtime};

#[test]
fn a_future_contract_version_is_refused_by_name() {
    let error = runtime()
        .load(
            &plugin_bytes("future-contract"),
            PluginSource::File("future.wasm".into()),
        )
        .expect_err("9.0.0 is not supported");
    let message = error.to_string();
    assert!(matches!(error, LoadError::Contract { .. }), "{message}");
    assert!(message.contains("plugboard:adapter@9.0.0"), "{message}");
    assert!(message.contains("supported: 0.2, 0.1"), "{message}");
    assert!(message.contains("future.wasm"), "{message}");
}

#[test]
fn garbage_bytes_are_not_a_component() {
    let error = runtime()
        .load(b"\0asm garbage", PluginSource::File("garbage.wasm".into()))
        .expect_err("garbage does not compile");
    assert!(matches!(error, LoadError::Compile { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("garbage.wasm: not a valid wasm component"),
        "{error}"
    );
}

#[test]
fn the_current_contract_loads_and_describes_itself() {
    let plugin = runtime()
        .load(
            &plugin_bytes("tool-use"),
            PluginSource::File("tool-use.wasm".into()),
        )
        .expect("tool-use loads");
    assert_eq!(plugin.contract(), "0.2.0");
    assert_eq!(plugin.info().name, "tool-use");
    assert_eq!(
        plugin.info().tool_call_triggers,
        vec!["<tool_use>".to_string()]
    );
}

#[test]
fn a_contract_0_1_adapter_still_loads_serves_and_has_no_call_grammar() {
    use plugboard::adapter::{GrammarRequest, ParseOptions, Tool, ToolChoice};
    let plugin = runtime()
        .load(
            &plugin_bytes("contract-v0-1"),
            PluginSource::File("legacy.wasm".into()),
        )
        .expect("a 0.1 adapter loads");
    assert_eq!(plugin.contract(), "0.1.0");
    assert_eq!(plugin.info().name, "legacy");
    let parsed = plugin
        .parse("  hello  ", &ParseOptions::default())
        .expect("parses");
    assert_eq!(parsed.content.as_deref(), Some("hello"));
    let grammar = plugin
        .session()
        .expect("a session")
        .call_grammar(&GrammarRequest {
            tools: vec![Tool {
                name: "f".into(),
                description: None,
                parameters: "{}".into(),
            }],
            tool_choice: ToolChoice::Required,
            ..GrammarRequest::default()
        })
        .expect("no error");
    assert_eq!(grammar, None);
}
