//! Whether an output without markup is tool calls: Llama 3.x answers a tool request with bare
//! JSON, `{"name": "get_weather", "parameters": {"city": "Paris"}}`, sometimes several objects
//! separated by `;` or line breaks, or a list of them.
//!
//! The parsing rules ask that such an output have the call's shape as a whole: JSON objects and
//! separators only (end-of-turn markers aside), the first one a call — it has a `"name"` and
//! `"parameters"`/`"arguments"`, or names an offered tool. `{"name": "Ada", "age": 36}` is JSON
//! mode, not a call; prose after the JSON makes the whole output prose.
//!
//! Only the first object decides. Later objects that are broken, truncated or not calls are
//! reported as problems of those calls, and so is a first object cut off by the end of the
//! output or broken after its `"name"` key: the model was writing a call.

use plugboard_sdk::json::{JsonEvent, JsonScanner, decode_string};
use plugboard_sdk::scanner::{Markers, Scan};
use serde_json::{Map, Value};

use crate::sequence::is_separator;

/// What an output (so far) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Tool calls: read it as if it followed `<|python_tag|>`.
    Calls,
    /// Prose (or JSON that is not a call): read it as ordinary output.
    NotCalls,
    /// Not known before more text comes.
    Undecided,
}

/// One JSON value at the start of a text.
enum Scanned {
    /// Complete after `end` bytes.
    Complete { end: usize },
    /// Not JSON at byte `at`; `named`: a `"name"` key came before.
    Broken { at: usize, named: bool },
    /// The text ended inside it.
    Open { named: bool },
}

fn scan_value(text: &str) -> Scanned {
    let mut scanner = JsonScanner::new();
    let mut named = false;
    for (i, b) in text.bytes().enumerate() {
        let Ok(fed) = scanner.feed(b) else {
            // Resume at a character boundary, whatever byte broke the JSON.
            let at = (i..=text.len())
                .find(|&at| text.is_char_boundary(at))
                .unwrap_or(text.len());
            return Scanned::Broken { at, named };
        };
        for event in fed.iter() {
            if let JsonEvent::KeyEnd { depth: 1 } = event {
                let key = decode_string(&[b"\"", scanner.key(), b"\""].concat());
                named |= matches!(key.as_deref(), Some("name" | "function"));
            }
        }
        if scanner.is_done() {
            return Scanned::Complete { end: i + 1 };
        }
    }
    Scanned::Open { named }
}

/// Whether a complete object is a call: a name, and arguments or an offered name.
fn is_call(object: &Map<String, Value>, offered: &[String]) -> bool {
    if let Some(Value::Object(function)) = object.get("function") {
        return is_call(function, offered);
    }
    let Some(name) = object.get("name").and_then(Value::as_str) else {
        return false;
    };
    let has_arguments = object.contains_key("parameters") || object.contains_key("arguments");
    !name.trim().is_empty() && (has_arguments || offered.iter().any(|t| t == name.trim()))
}

/// Where reading resumes after a broken object: the next `{` after `;` or a line break.
fn resume_after(text: &str) -> Option<usize> {
    text.char_indices()
        .filter(|(_, c)| matches!(c, ';' | '\n'))
        .find_map(|(i, _)| {
            let next = text[i + 1..].trim_start();
            next.starts_with('{').then(|| text.len() - next.len())
        })
}

/// Whether `text` is nothing but end-of-turn markers and whitespace (a partial marker at the
/// end included, unless `at_end`).
fn only_end_of_turn(mut text: &str, end_of_turn: &Markers, at_end: bool) -> bool {
    loop {
        text = text.trim_start();
        if text.is_empty() {
            return true;
        }
        match end_of_turn.scan(text, at_end) {
            Scan::Marker { start: 0, len, .. } => text = &text[len..],
            Scan::Text { safe: 0 } => return !at_end,
            _ => return false,
        }
    }
}

/// What `text`, the output so far (all of it when `at_end`), is.
pub fn shape(text: &str, at_end: bool, offered: &[String], end_of_turn: &Markers) -> Shape {
    let body = text.trim_start();
    if only_end_of_turn(body, end_of_turn, at_end) {
        return if at_end {
            Shape::NotCalls
        } else {
            Shape::Undecided
        };
    }
    if !body.starts_with(['{', '[']) {
        return Shape::NotCalls;
    }
    let mut first: Option<bool> = None;
    let mut rest = body;
    loop {
        rest = rest.trim_start_matches(is_separator);
        if !rest.starts_with('{') {
            if only_end_of_turn(rest, end_of_turn, at_end) {
                break;
            }
            // Prose (or other JSON) after the calls, or a list of something else.
            return Shape::NotCalls;
        }
        match scan_value(rest) {
            Scanned::Complete { end } => {
                if first.is_none() {
                    let call = match serde_json::from_str::<Value>(&rest[..end]) {
                        Ok(Value::Object(object)) => is_call(&object, offered),
                        _ => false,
                    };
                    if !call {
                        return Shape::NotCalls;
                    }
                    first = Some(true);
                }
                rest = &rest[end..];
            }
            Scanned::Broken { at, named } => {
                if first.is_none() && !named {
                    return Shape::NotCalls;
                }
                first = Some(true);
                match resume_after(&rest[at..]) {
                    Some(next) => rest = &rest[at + next..],
                    // The broken object runs to the end: nothing more to learn.
                    None => break,
                }
            }
            Scanned::Open { named } => {
                if first.is_none() {
                    if !at_end {
                        return Shape::Undecided;
                    }
                    first = Some(named);
                }
                break;
            }
        }
    }
    match (first, at_end) {
        (Some(true), true) => Shape::Calls,
        (Some(true), false) => Shape::Undecided,
        (None, false) => Shape::Undecided,
        _ => Shape::NotCalls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(text: &str, at_end: bool) -> Shape {
        let eot = Markers::new(["<|eot_id|>", "<|eom_id|>"]);
        shape(text, at_end, &["get_time".to_string()], &eot)
    }

    #[test]
    fn calls_need_the_whole_output() {
        let call = r#"{"name": "f", "parameters": {"a": "}"}}"#;
        assert_eq!(of(call, true), Shape::Calls);
        assert_eq!(
            of(&format!(" {call};\n{call}<|eot_id|>"), true),
            Shape::Calls
        );
        assert_eq!(of(&format!("[{call}, {call}]"), true), Shape::Calls);
        assert_eq!(of(&format!("{call} and more"), false), Shape::NotCalls);
        assert_eq!(of(&format!("{call}<|eot_id|>x"), true), Shape::NotCalls);
        for end in 0..call.len() {
            assert_eq!(
                of(&call[..end], false),
                Shape::Undecided,
                "{}",
                &call[..end]
            );
        }
        assert_eq!(of(&format!("{call}<|eo"), false), Shape::Undecided);
    }

    #[test]
    fn json_that_is_not_a_call_is_prose() {
        assert_eq!(of(r#"{"name": "Ada", "age": 36}"#, true), Shape::NotCalls);
        assert_eq!(of(r#"{"name": "get_time"}"#, true), Shape::Calls);
        assert_eq!(of("[1, 2]", false), Shape::NotCalls);
        assert_eq!(of("Sure", false), Shape::NotCalls);
        assert_eq!(of(r#"{"a": 1,}"#, false), Shape::NotCalls);
        assert_eq!(of(r#"{"a": 1"#, true), Shape::NotCalls);
    }

    #[test]
    fn broken_and_truncated_calls_are_calls() {
        assert_eq!(
            of(r#"{"name": "f", "parameters": {"a": }"#, true),
            Shape::Calls
        );
        assert_eq!(
            of(r#"{"name": "f", "parameters": {"a": "#, true),
            Shape::Calls
        );
        assert_eq!(
            of(
                r#"{"name": "f", "parameters": {"a": 1,}};{"name": "g"}"#,
                true
            ),
            Shape::Calls
        );
    }
}
