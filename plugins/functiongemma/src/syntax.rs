//! Values written in FunctionGemma's syntax, for prompts: strings between `<escape>` tokens,
//! numbers, booleans and null bare, objects `{key:value,…}` with their keys in sorted order
//! (as Jinja's `dictsort` gives them), lists `[…]`.

use serde_json::Value;

pub const ESCAPE: &str = "<escape>";

pub fn write(value: &Value) -> String {
    let mut out = String::new();
    write_into(&mut out, value);
    out
}

fn write_into(out: &mut String, value: &Value) {
    match value {
        Value::String(s) => {
            out.push_str(ESCAPE);
            out.push_str(s);
            out.push_str(ESCAPE);
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_into(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(key);
                out.push(':');
                write_into(out, &map[key]);
            }
            out.push('}');
        }
        // null, booleans and numbers as JSON writes them.
        other => out.push_str(&other.to_string()),
    }
}

/// A JSON Schema with its `type` names upper-cased (`STRING`, `OBJECT`), as FunctionGemma's
/// declarations write them.
pub fn declared_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("type", Value::String(t)) => Value::String(t.to_uppercase()),
                        ("type", Value::Array(types)) => Value::Array(
                            types
                                .iter()
                                .map(|t| match t {
                                    Value::String(t) => Value::String(t.to_uppercase()),
                                    other => other.clone(),
                                })
                                .collect(),
                        ),
                        _ => declared_schema(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(declared_schema).collect()),
        other => other.clone(),
    }
}
