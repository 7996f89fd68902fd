//! Pieces for building prompts: ChatML, tool descriptions in OpenAI's JSON shape, and the
//! arguments of earlier calls as JSON values.

use crate::types::{Message, PromptRequest, Role, Tool, ToolChoice};

/// The role's name as chat templates write it.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

/// Renders messages in ChatML: `<|im_start|>ROLE\nTEXT<|im_end|>\n` each, then
/// `<|im_start|>assistant\n` when `add_generation_prompt`. `system`, when given, replaces the
/// conversation's system message (or comes first if there is none).
///
/// Messages are rendered as text only: a family that writes calls or tool results in its own
/// way converts those messages to text first (see the `tool-use` adapter).
pub fn chatml(messages: &[Message], system: Option<&str>, add_generation_prompt: bool) -> String {
    let mut out = String::new();
    let mut rest = messages;
    if let Some(first) = messages.first()
        && first.role == Role::System
        && system.is_some()
    {
        rest = &messages[1..];
    }
    if let Some(system) = system {
        push_chatml(&mut out, "system", system);
    }
    for m in rest {
        push_chatml(
            &mut out,
            role_name(m.role),
            m.content.as_deref().unwrap_or(""),
        );
    }
    if add_generation_prompt {
        out.push_str("<|im_start|>assistant\n");
    }
    out
}

fn push_chatml(out: &mut String, role: &str, text: &str) {
    out.push_str("<|im_start|>");
    out.push_str(role);
    out.push('\n');
    out.push_str(text);
    out.push_str("<|im_end|>\n");
}

/// Whether the request allows tool calls: it offers tools and its `tool_choice` is not `none`.
/// Where it does not, a prompt describes no tools and names no call triggers.
pub fn calls_allowed(request: &PromptRequest) -> bool {
    !request.tools.is_empty() && request.tool_choice != ToolChoice::None
}

/// Whether `prompt` ends inside an open reasoning block: its last `open` marker has no `close`
/// after it (`…<|im_start|>assistant\n<think>\n`). Such a prompt's output starts as reasoning:
/// adapters set [`Prompt::reasoning_open`](crate::types::Prompt) from it, and the host passes
/// it back when parsing.
pub fn ends_inside(prompt: &str, open: &str, close: &str) -> bool {
    match prompt.rfind(open) {
        Some(at) => !prompt[at + open.len()..].contains(close),
        None => false,
    }
}

/// A JSON value from text, or the text as a JSON string when it is not JSON.
pub fn json_value(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
}

/// A tool in OpenAI's shape, `{"type": "function", "function": {"name", "description",
/// "parameters"}}`, keys in that order and the schema's keys as the client wrote them: the
/// shape chat templates expect.
pub fn tool_json(tool: &Tool) -> serde_json::Value {
    let mut function = serde_json::Map::new();
    function.insert("name".into(), tool.name.clone().into());
    if let Some(description) = &tool.description {
        function.insert("description".into(), description.clone().into());
    }
    function.insert("parameters".into(), json_value(&tool.parameters));
    let mut outer = serde_json::Map::new();
    outer.insert("type".into(), "function".into());
    outer.insert("function".into(), function.into());
    outer.into()
}

/// Tools as JSON text in OpenAI's shape, one per line.
pub fn tools_json_lines(tools: &[Tool]) -> String {
    tools
        .iter()
        .map(|t| tool_json(t).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// JSON text exactly as Python's `json.dumps(value, ensure_ascii=False, indent=indent)` writes
/// it, which is what transformers' `tojson` filter gives chat templates: `", "` and `": "`
/// between items (`","` and newlines with `indent`), non-ASCII text as is, floats as Python's
/// `repr` writes them (`1e+16`, `1e-05`, `2.0`). Templates rendered byte for byte need it.
pub fn py_json(value: &serde_json::Value, indent: Option<usize>) -> String {
    let mut out = String::new();
    write_py_json(&mut out, value, indent, 0);
    out
}

fn write_py_json(out: &mut String, value: &serde_json::Value, indent: Option<usize>, level: usize) {
    use serde_json::Value;
    // Before each item of a container: the separator, then a new line and indentation.
    let item = |out: &mut String, first: bool, level: usize| {
        match (first, indent) {
            (false, None) => out.push_str(", "),
            (false, Some(_)) => out.push(','),
            (true, _) => {}
        }
        if let Some(width) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(width * level));
        }
    };
    match value {
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                item(out, i == 0, level + 1);
                write_py_json(out, v, indent, level + 1);
            }
            item(out, true, level);
            out.push(']');
        }
        Value::Object(map) if !map.is_empty() => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                item(out, i == 0, level + 1);
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_py_json(out, v, indent, level + 1);
            }
            item(out, true, level);
            out.push('}');
        }
        Value::Number(n) => match (n.is_f64(), n.as_f64()) {
            (true, Some(f)) => out.push_str(&py_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        // Strings (serde_json escapes exactly the characters Python escapes), literals and
        // empty containers.
        other => out.push_str(&other.to_string()),
    }
}

/// A float as Python's `repr` writes it: the shortest digits that read back the same, in
/// positional notation for exponents from -4 to 15 (always with a fraction), else scientific.
fn py_float(f: f64) -> String {
    if !f.is_finite() {
        // json.dumps writes these, though they are not JSON.
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1;
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            let (int, frac) = digits.split_at(point as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let mantissa = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exp.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn py_json_writes_what_python_writes() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"b": [1, 2.5, "é\n\"", null, true], "a": {}, "c": [], "d": {"x": -0.0001}}"#,
        )
        .unwrap();
        assert_eq!(
            py_json(&v, None),
            r#"{"b": [1, 2.5, "é\n\"", null, true], "a": {}, "c": [], "d": {"x": -0.0001}}"#
        );
        assert_eq!(
            py_json(&v, Some(2)),
            "{\n  \"b\": [\n    1,\n    2.5,\n    \"é\\n\\\"\",\n    null,\n    true\n  ],\n  \"a\": {},\n  \"c\": [],\n  \"d\": {\n    \"x\": -0.0001\n  }\n}"
        );
    }

    #[test]
    fn open_reasoning_is_the_last_open_marker_left_unclosed() {
        let (open, close) = ("<think>", "</think>");
        assert!(ends_inside("<|im_start|>assistant\n<think>\n", open, close));
        assert!(!ends_inside(
            "<think>a</think><|im_start|>assistant\n",
            open,
            close
        ));
        assert!(ends_inside("<think>a</think> <think>", open, close));
        assert!(!ends_inside("no reasoning", open, close));
        assert!(ends_inside("[THINK]", "[THINK]", "[/THINK]"));
    }

    #[test]
    fn floats_read_like_python_repr() {
        let cases = [
            (1.0, "1.0"),
            (22.5, "22.5"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.6, "123456789012345.6"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1e100, "1e+100"),
            (0.0, "0.0"),
            (100.0, "100.0"),
        ];
        for (f, text) in cases {
            assert_eq!(py_float(f), text, "{f}");
        }
    }
}
