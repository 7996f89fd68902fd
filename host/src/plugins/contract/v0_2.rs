//! Contract 0.2 (`wit/v0.2`): 0.1 and `call-grammar`, the family's call syntax as a grammar
//! for constrained decoding.

use wasmtime::Store;
use wasmtime::component::ResourceAny;

use super::super::runtime::PluginState;
use super::Outcome;
use crate::adapter as host;

wasmtime::component::bindgen!({
    path: "../wit/v0.2",
    world: "model-adapter",
});

use exports::plugboard::adapter::adapter as w;

shared_types!();
shared_calls!();

pub fn call_grammar(
    a: &ModelAdapter,
    store: &mut Store<PluginState>,
    request: &host::GrammarRequest,
) -> Outcome<Option<host::CallGrammar>> {
    let request = w::GrammarRequest {
        tools: request.tools.iter().map(Into::into).collect(),
        tool_choice: (&request.tool_choice).into(),
        parallel_tool_calls: request.parallel_tool_calls,
        reasoning_open: request.reasoning_open,
        control_tokens: request
            .control_tokens
            .iter()
            .map(|(text, id)| w::ControlToken {
                text: text.clone(),
                id: *id,
            })
            .collect(),
    };
    Ok(a.plugboard_adapter_adapter()
        .call_call_grammar(store, &request)?
        .map(|grammar| {
            grammar.map(|g| host::CallGrammar {
                grammar: g.grammar,
                start: match g.start {
                    w::GrammarStart::FromStart => host::GrammarStart::FromStart,
                    w::GrammarStart::OnTrigger(triggers) => host::GrammarStart::OnTrigger(
                        triggers.into_iter().map(|t| (t.text, t.at_start)).collect(),
                    ),
                },
                reasoning: g.reasoning,
            })
        })
        .map_err(Into::into))
}
