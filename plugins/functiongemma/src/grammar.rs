//! FunctionGemma's calls as a grammar: `<start_function_call>call:NAME{…}<end_function_call>`,
//! the arguments in the family's own syntax ([`crate::syntax`]), built from each tool's schema
//! by the SDK's value walk: numbers as JSON writes them (bounds kept), strings between
//! `<escape>` markers (pattern or length kept where a regular expression can hold them), keys
//! bare where they are names.

use plugboard_sdk::calls::is_name_char;
use plugboard_sdk::grammar::values::{Rules, ValueGrammar, ValueSyntax, string_regex};
use plugboard_sdk::grammar::{self, CallSyntax};
use plugboard_sdk::types::{GrammarRequest, Tool, ToolCallGrammar};
use serde_json::{Map, Value};

use crate::syntax::{ESCAPE, write};
use crate::{END_CALL, MARKERS, START_CALL};

pub fn call_grammar(request: &GrammarRequest) -> Option<ToolCallGrammar> {
    let escape = grammar::marker(request, ESCAPE);
    let escape_is_text = escape.starts_with('"');
    // A string's text ends at the next `<escape>`: as text, the grammar stops it there (and
    // the text cannot hold one); as a control token, text never produces it.
    let string = |schema: &Map<String, Value>, rules: &mut Rules| {
        let text = format!("/{}/", string_regex(schema));
        if escape_is_text {
            let body = rules.define(&format!("[suffix={escape}]"), text);
            format!("{escape} {body}")
        } else {
            format!("{escape} {text} {escape}")
        }
    };
    // `write` puts strings between `<escape>`s; the marker is spelt as the grammar must.
    let constant = |value: &Value| {
        let parts: Vec<String> = write(value)
            .split(ESCAPE)
            .map(|part| match part {
                "" => String::new(),
                part => grammar::literal(part),
            })
            .collect();
        parts.join(&format!(" {escape} "))
    };
    let key = |name: &str| {
        if grammar::is_identifier(name) {
            Some(grammar::literal(&format!("{name}:")))
        } else if !name.contains(ESCAPE) && !name.is_empty() {
            Some(format!(
                "{escape} {} {escape} \":\"",
                grammar::literal(name)
            ))
        } else {
            None
        }
    };
    let syntax = ValueSyntax {
        string: Some(&string),
        constant: &constant,
        boolean: "\"true\" | \"false\"",
        null: "\"null\"",
        key: &key,
        any_key: "/[A-Za-z_][A-Za-z0-9_]*/ \":\"",
        separator: ",",
        list: ("[", "]"),
        object: ("{", "}"),
        json_containers: false,
        sorted_keys: true,
    };
    let (start, end) = (
        grammar::marker(request, START_CALL),
        grammar::marker(request, END_CALL),
    );
    let call = |tool: &Tool, prefix: &str| {
        if tool.name.is_empty() || !tool.name.chars().all(is_name_char) {
            return None;
        }
        let schema = grammar::parameters(tool);
        let mut values = ValueGrammar::new(&syntax, &schema, prefix);
        let arguments = values.properties(
            schema.as_object().expect("an object"),
            0,
            &key,
            syntax.any_key,
            syntax.separator,
        )?;
        let expression = format!(
            "{start} {} {arguments} \"}}\" {end}",
            grammar::literal(&format!("call:{}{{", tool.name))
        );
        Some((expression, values.rules()))
    };
    grammar::with_call_rules("fg", call, |call| {
        CallSyntax {
            call,
            separator: "",
            list: None,
            triggers: MARKERS.grammar_triggers(),
            reasoning: MARKERS.reasoning,
        }
        .grammar(request)
    })
}
