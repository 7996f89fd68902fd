//! A family's call syntax as a grammar, so that the host can constrain decoding to calls the
//! adapter's own parser reads (contract 0.2, [`crate::Adapter::call_grammar`]).
//!
//! Grammars are written in llguidance's Lark dialect. The host defines one rule per offered
//! tool, `args0`, `args1`, … ([`args_rule`]): that tool's arguments as a JSON object valid
//! against its schema, written as Python's `json.dumps` writes it (`", "` and `": "`) or
//! compactly, the forms chat templates show models. An adapter only says what surrounds them: the markers,
//! the name, the separators. [`CallSyntax::grammar`] turns that into a whole [`ToolCallGrammar`]
//! for any `tool_choice`:
//!
//! - `required` or a named function: the grammar applies from the first token, the output is
//!   one call (or several, when parallel calls are allowed) and nothing else;
//! - `auto`: the grammar applies from one of the family's triggers on, one call (or one list
//!   of calls) at a time;
//! - `none`, or no tools: no grammar.
//!
//! The invariant each adapter keeps (its tests check it with [`crate::testing`]): every text
//! the grammar accepts is read by the adapter's `parse-response` as exactly the calls it
//! encodes, with no problem.

use crate::types::{GrammarRequest, GrammarStart, Tool, ToolCallGrammar, ToolChoice, Trigger};

/// The rule the host defines for the arguments of the `index`th offered tool.
pub fn args_rule(index: usize) -> String {
    format!("args{index}")
}

/// `text` as a Lark string literal.
pub fn literal(text: &str) -> String {
    // A JSON string is a valid Lark literal: the same quotes and escapes.
    serde_json::Value::String(text.to_string()).to_string()
}

/// The tools a call may name under the request's `tool_choice`, with their index among all
/// offered tools (which names their arguments rule).
pub fn callable(request: &GrammarRequest) -> Vec<(usize, &Tool)> {
    request
        .tools
        .iter()
        .enumerate()
        .filter(|(_, tool)| match &request.tool_choice {
            ToolChoice::Function(name) => tool.name == *name,
            ToolChoice::None => false,
            ToolChoice::Auto | ToolChoice::Required => true,
        })
        .collect()
}

/// How a family writes one call, and how calls follow each other.
pub struct CallSyntax<'a> {
    /// The Lark expression of one call of one tool, given the tool and its arguments rule,
    /// e.g. `"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " args0 "}\n</tool_call>"`;
    /// `None` for a tool whose name the format cannot carry (the grammar leaves it out).
    pub call: &'a dyn Fn(&Tool, &str) -> Option<String>,
    /// Between two calls of a parallel turn (a Lark expression; `""` for none).
    pub separator: &'a str,
    /// Lark expressions around all the calls of a turn, for families that write their calls
    /// as one list (`[TOOL_CALLS][` … `]`); `None` where each call has markers of its own.
    pub list: Option<(String, String)>,
    /// Texts that start a call (or the list) in free output.
    pub triggers: Vec<Trigger>,
    /// The family's reasoning markers, if it reasons.
    pub reasoning: Option<(&'a str, &'a str)>,
}

impl CallSyntax<'_> {
    /// The grammar for this request, or `None` when no call may be made.
    pub fn grammar(&self, request: &GrammarRequest) -> Option<ToolCallGrammar> {
        let alternatives: Vec<String> = callable(request)
            .iter()
            .filter_map(|(index, tool)| (self.call)(tool, &args_rule(*index)))
            .collect();
        if alternatives.is_empty() {
            return None;
        }
        let mut grammar = format!("call: {}\n", alternatives.join("\n    | "));
        let calls = if request.parallel_tool_calls {
            format!("call ({} call)*", self.separator)
        } else {
            "call".to_string()
        };
        let body = match &self.list {
            Some((open, close)) => format!("{open} {calls} {close}"),
            // With a trigger per call, the host waits for the next trigger after each one.
            None if request.tool_choice == ToolChoice::Auto => "call".to_string(),
            // A separator may also end the turn: a model that writes one after its last call
            // is not forced into another call.
            None if request.parallel_tool_calls && !self.separator.is_empty() => {
                format!("{calls} ({})?", self.separator)
            }
            None => calls,
        };
        let start = if request.tool_choice == ToolChoice::Auto {
            grammar.push_str(&format!("start: {body}\n"));
            GrammarStart::OnTrigger(self.triggers.clone())
        } else {
            match self.reasoning.filter(|_| request.reasoning_open) {
                // The prompt opened reasoning: it ends (its close marker) before the calls.
                Some((_, close)) => grammar.push_str(&format!(
                    "start: reasoning /[ \\t\\r\\n]*/ {body}\nreasoning[suffix={}]: /(?s:.*)/\n",
                    literal(close)
                )),
                None => grammar.push_str(&format!("start: {body}\n")),
            }
            GrammarStart::FromStart
        };
        Some(ToolCallGrammar {
            grammar,
            start,
            reasoning: self
                .reasoning
                .map(|(open, close)| (open.to_string(), close.to_string())),
        })
    }
}

/// A marker as the grammar must name it: by id when the model has it as a control token
/// (text never produces one), as text otherwise.
pub fn marker(request: &GrammarRequest, text: &str) -> String {
    match request.control_tokens.iter().find(|t| t.text == text) {
        Some(token) => format!("<[{}]>", token.id),
        None => literal(text),
    }
}

/// One call as a JSON object naming the tool then giving its arguments, written as Python's
/// `json.dumps` writes it: `{"name": "get_weather", "arguments": {…}}` (`name_key` and
/// `args_key` name the two members).
pub fn json_envelope(tool: &Tool, args: &str, name_key: &str, args_key: &str) -> String {
    let head = format!(
        "{{{}: {}, {}: ",
        literal(name_key),
        literal(&tool.name),
        literal(args_key)
    );
    format!("{} {args} \"}}\"", literal(&head))
}

/// A trigger anywhere in the output.
pub fn trigger(text: &str) -> Trigger {
    Trigger {
        text: text.to_string(),
        at_start: false,
    }
}
