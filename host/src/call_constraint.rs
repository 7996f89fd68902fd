//! From an adapter's call grammar and the request's tools to the engine's constraint.
//!
//! The adapter knows the family's call syntax; the host knows the tools. An adapter's grammar
//! references `args0`, `args1`, … and this module defines them: each offered tool's arguments
//! as a JSON object valid against its JSON Schema (llguidance compiles the schema), written as
//! Python's `json.dumps` writes JSON (`", "` between items, `": "` after keys) or compactly,
//! with no other whitespace. Those are the forms chat templates render calls in, so a model
//! that writes its calls as it was shown is never masked, and a small model cannot wander off
//! into endless whitespace inside a call.

use serde_json::{Value, json};

use crate::adapter::{CallGrammar, GrammarStart, Tool};
use crate::engine::{Activation, ConstraintRequest, Trigger};

/// The constraint for a tool-calling turn. `parallel`: whether several calls may follow one
/// another; `reasoning_open`: the prompt ends inside the adapter's reasoning block.
pub fn tool_constraint(
    grammar: CallGrammar,
    tools: &[Tool],
    parallel: bool,
    reasoning_open: bool,
) -> ConstraintRequest {
    let mut lark = grammar.grammar;
    lark.push('\n');
    lark.push_str(&args_rules(tools));
    let activation = match grammar.start {
        GrammarStart::FromStart => Activation::FromStart,
        GrammarStart::OnTrigger(triggers) => Activation::OnTrigger {
            triggers: triggers
                .into_iter()
                .map(|(text, at_start)| Trigger { text, at_start })
                .collect(),
            starts_in_reasoning: reasoning_open && grammar.reasoning.is_some(),
            reasoning: grammar.reasoning,
        },
    };
    ConstraintRequest {
        grammar: lark,
        activation,
        repeat: parallel,
    }
}

/// `args0: %json {…}` and so on, one line per tool.
pub fn args_rules(tools: &[Tool]) -> String {
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| format!("args{i}: %json {}\n", arguments_schema(&tool.parameters)))
        .collect()
}

/// A tool's parameters schema as the arguments grammar wants it: always an object (rule 4 of
/// the parsing rules: arguments are a JSON object), written the canonical way.
fn arguments_schema(parameters: &str) -> Value {
    let mut schema = match serde_json::from_str::<Value>(parameters) {
        Ok(Value::Object(schema)) => schema,
        _ => serde_json::Map::new(),
    };
    schema
        .entry("type")
        .or_insert_with(|| Value::String("object".into()));
    schema.insert("x-guidance".into(), canonical());
    Value::Object(schema)
}

/// llguidance's options for JSON as Python's `json.dumps` writes it (`", "`, `": "`) or as
/// compact JSON (`","`, `":"`), the two forms templates show, and no other whitespace. (The
/// separators are regular expressions.)
fn canonical() -> Value {
    json!({"whitespace_flexible": false, "item_separator": ", ?", "key_separator": ": ?"})
}

/// The constraint for a JSON answer valid against `schema`, from the first token on, with the
/// same separators.
pub fn json_constraint(schema: &Value) -> ConstraintRequest {
    let schema = match schema {
        Value::Object(schema) => {
            let mut schema = schema.clone();
            schema.insert("x-guidance".into(), canonical());
            Value::Object(schema)
        }
        Value::Bool(true) => json!({"x-guidance": canonical()}),
        other => other.clone(),
    };
    ConstraintRequest {
        grammar: format!("start: %json {schema}"),
        activation: Activation::FromStart,
        repeat: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_an_object_written_canonically() {
        let tools = vec![
            Tool {
                name: "a".into(),
                description: None,
                parameters: r#"{"type": "object", "properties": {"x": {"type": "integer"}}}"#
                    .into(),
            },
            Tool {
                name: "b".into(),
                description: None,
                parameters: "not json".into(),
            },
        ];
        let rules = args_rules(&tools);
        let lines: Vec<&str> = rules.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("args0: %json {\"type\":\"object\",\"properties\""));
        assert!(lines[1].starts_with("args1: %json {\"type\":\"object\",\"x-guidance\""));
    }
}
