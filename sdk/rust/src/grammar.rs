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

pub mod values;

use serde_json::Value;

use crate::types::{GrammarRequest, GrammarStart, Tool, ToolCallGrammar, ToolChoice, Trigger};
use values::{ValueGrammar, ValueSyntax};

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

/// A trigger only at the start of the output (after white space).
pub fn trigger_at_start(text: &str) -> Trigger {
    Trigger {
        text: text.to_string(),
        at_start: true,
    }
}

/// A tool's parameters schema, `{}` when it is not an object.
pub fn parameters(tool: &Tool) -> Value {
    match serde_json::from_str::<Value>(&tool.parameters) {
        Ok(schema @ Value::Object(_)) => schema,
        _ => Value::Object(Default::default()),
    }
}

/// Whether `name` is a Python identifier (ASCII: what a keyword argument can be named).
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// A JSON value as a Python literal: `True`, `False`, `None`, JSON's strings, numbers, lists and
/// dicts (which Python reads the same).
pub fn python_literal(value: &Value) -> String {
    match value {
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(python_literal).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let members: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), python_literal(v)))
                .collect();
            format!("{{{}}}", members.join(", "))
        }
        other => other.to_string(),
    }
}

/// How Python writes values: JSON's strings and numbers, `True`, `False`, `None`, lists and
/// dicts with `", "` and `": "`.
pub fn python_values() -> ValueSyntax<'static> {
    fn constant(value: &Value) -> String {
        literal(&python_literal(value))
    }
    fn dict_key(key: &str) -> Option<String> {
        Some(literal(&format!("{}: ", Value::String(key.to_string()))))
    }
    ValueSyntax {
        string: None,
        constant: &constant,
        boolean: "\"True\" | \"False\"",
        null: "\"None\"",
        key: &dict_key,
        any_key: "%json {\"type\": \"string\"} \": \"",
        separator: ", ",
        list: ("[", "]"),
        object: ("{", "}"),
        json_containers: true,
        sorted_keys: false,
    }
}

/// One pythonic call, `name(key=value, …)`, its arguments as Python literals valid against the
/// tool's schema ([`values`]): the Lark expression and the rules it needs, named from
/// `prefix`. `None` when the tool's name (a Python name, also dotted or with `-`) or a
/// required argument's name cannot be written that way.
pub fn pythonic_call(tool: &Tool, prefix: &str) -> Option<(String, String)> {
    let name = tool.name.as_str();
    let name_ok = name.starts_with(|c: char| c == '_' || c.is_alphabetic())
        && name
            .chars()
            .all(|c| c == '_' || c == '.' || c == '-' || c.is_alphanumeric());
    if !name_ok {
        return None;
    }
    let syntax = python_values();
    let schema = parameters(tool);
    let mut values = ValueGrammar::new(&syntax, &schema, prefix);
    let keyword = |k: &str| is_identifier(k).then(|| literal(&format!("{k}=")));
    let arguments = values.properties(
        schema.as_object().expect("an object"),
        0,
        &keyword,
        "/[A-Za-z_][A-Za-z0-9_]*/ \"=\"",
        ", ",
    )?;
    Some((
        format!("{} {arguments} \")\"", literal(&format!("{name}("))),
        values.rules(),
    ))
}

/// A family whose calls are a Python list, `[get_weather(city="Paris"), get_time()]`: the
/// grammar for this request. `open` is the Lark expression that opens the list (`"["`, or a
/// marker then `"["`); the triggers and reasoning markers are the family's.
pub fn pythonic_list(
    request: &GrammarRequest,
    open: &str,
    triggers: Vec<Trigger>,
    reasoning: Option<(&str, &str)>,
) -> Option<ToolCallGrammar> {
    with_call_rules("py", pythonic_call, |call| {
        CallSyntax {
            call,
            separator: "\", \"",
            list: Some((open.to_string(), "\"]\"".to_string())),
            triggers,
            reasoning,
        }
        .grammar(request)
    })
}

/// A grammar whose calls need rules of their own (arguments not written as JSON, see
/// [`values`]): `call(tool, prefix)` gives a call's expression and the rules it defines, named
/// from a prefix unique to that call (`{prefix}1`, `{prefix}2`, …); `grammar` builds the
/// grammar from the calls' expressions, and the rules are added to it.
pub fn with_call_rules(
    prefix: &str,
    call: impl Fn(&Tool, &str) -> Option<(String, String)>,
    grammar: impl FnOnce(&dyn Fn(&Tool, &str) -> Option<String>) -> Option<ToolCallGrammar>,
) -> Option<ToolCallGrammar> {
    let rules = std::cell::RefCell::new(String::new());
    let count = std::cell::Cell::new(0);
    let expression = |tool: &Tool, _args: &str| {
        count.set(count.get() + 1);
        let (expression, needs) = call(tool, &format!("{prefix}{}", count.get()))?;
        rules.borrow_mut().push_str(&needs);
        Some(expression)
    };
    let mut grammar = grammar(&expression)?;
    grammar.grammar.push_str(&rules.into_inner());
    Some(grammar)
}
