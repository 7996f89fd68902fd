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

/// Whether `text` is nothing but end-of-turn markers and white space (a partial marker at the
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

#[derive(Clone, Debug)]
enum Phase {
    /// Before the first value.
    Lead,
    /// Between values: separators, another object, or end-of-turn markers.
    Between,
    /// Inside an object that started at `start`; `named`: a `"name"` key came.
    Value {
        scanner: JsonScanner,
        start: usize,
        named: bool,
    },
    /// After a broken object: looking for the next one after `;` or a line break.
    Skip,
    /// Not calls, whatever follows.
    Prose,
}

/// Follows an output as it grows and says what it is. The output is only ever appended to,
/// so each byte is read once (a long call costs no more per chunk than a short one).
#[derive(Clone, Debug)]
pub struct BareProbe {
    offered: Vec<String>,
    end_of_turn: Markers,
    phase: Phase,
    /// Bytes of the output read so far.
    pos: usize,
    /// Whether the first object is a call, once known.
    first: Option<bool>,
}

impl BareProbe {
    pub fn new(offered: Vec<String>, end_of_turn: Markers) -> Self {
        BareProbe {
            offered,
            end_of_turn,
            phase: Phase::Lead,
            pos: 0,
            first: None,
        }
    }

    /// What `text` — the output so far, all of it when `at_end` — is. `text` must extend the
    /// text of the previous call.
    pub fn update(&mut self, text: &str, at_end: bool) -> Shape {
        loop {
            match &mut self.phase {
                Phase::Prose => return Shape::NotCalls,
                Phase::Lead => {
                    let rest = &text[self.pos..];
                    let body = rest.trim_start();
                    if only_end_of_turn(body, &self.end_of_turn, at_end) {
                        return if at_end {
                            Shape::NotCalls
                        } else {
                            Shape::Undecided
                        };
                    }
                    if !body.starts_with(['{', '[']) {
                        self.phase = Phase::Prose;
                        continue;
                    }
                    self.pos += rest.len() - body.len();
                    self.phase = Phase::Between;
                }
                Phase::Between => {
                    let rest = &text[self.pos..];
                    let next = rest.trim_start_matches(is_separator);
                    self.pos += rest.len() - next.len();
                    if next.starts_with('{') {
                        self.phase = Phase::Value {
                            scanner: JsonScanner::new(),
                            start: self.pos,
                            named: false,
                        };
                        continue;
                    }
                    if !only_end_of_turn(next, &self.end_of_turn, at_end) {
                        // Prose (or other JSON) after the calls, or a list of something else.
                        self.phase = Phase::Prose;
                        continue;
                    }
                    // Only end-of-turn markers so far: they may be followed by more.
                    return self.verdict(at_end);
                }
                Phase::Value {
                    scanner,
                    start,
                    named,
                } => {
                    let start = *start;
                    let mut outcome = None;
                    for (i, b) in text.as_bytes()[self.pos..].iter().enumerate() {
                        let Ok(fed) = scanner.feed(*b) else {
                            outcome = Some(Err(self.pos + i));
                            break;
                        };
                        for event in fed.iter() {
                            if let JsonEvent::KeyEnd { depth: 1 } = event {
                                let key = decode_string(&[b"\"", scanner.key(), b"\""].concat());
                                *named |= matches!(key.as_deref(), Some("name" | "function"));
                            }
                        }
                        if scanner.is_done() {
                            outcome = Some(Ok(self.pos + i + 1));
                            break;
                        }
                    }
                    let named = *named;
                    match outcome {
                        None => {
                            self.pos = text.len();
                            if self.first.is_none() && at_end {
                                self.first = Some(named);
                            }
                            return self.verdict(at_end);
                        }
                        Some(Ok(end)) => {
                            if self.first.is_none() {
                                let call = match serde_json::from_str::<Value>(&text[start..end]) {
                                    Ok(Value::Object(object)) => is_call(&object, &self.offered),
                                    _ => false,
                                };
                                self.first = Some(call);
                                if !call {
                                    self.phase = Phase::Prose;
                                    continue;
                                }
                            }
                            self.pos = end;
                            self.phase = Phase::Between;
                        }
                        Some(Err(at)) => {
                            if self.first.is_none() && !named {
                                self.phase = Phase::Prose;
                                continue;
                            }
                            self.first = Some(true);
                            // Resume at a character boundary, whatever byte broke the JSON.
                            self.pos = (at + 1..=text.len())
                                .find(|&p| text.is_char_boundary(p))
                                .unwrap_or(text.len());
                            self.phase = Phase::Skip;
                        }
                    }
                }
                Phase::Skip => {
                    let rest = &text[self.pos..];
                    let mut resume = None;
                    let mut wait_at = None;
                    for (i, _) in rest.char_indices().filter(|(_, c)| matches!(c, ';' | '\n')) {
                        let next = rest[i + 1..].trim_start();
                        if next.starts_with('{') {
                            resume = Some(rest.len() - next.len());
                            break;
                        }
                        if next.is_empty() {
                            wait_at = Some(i);
                            break;
                        }
                    }
                    match resume {
                        Some(at) => {
                            self.pos += at;
                            self.phase = Phase::Between;
                        }
                        None => {
                            // Keep a separator whose object may still come; skip the rest.
                            self.pos += wait_at.unwrap_or(rest.len());
                            return self.verdict(at_end);
                        }
                    }
                }
            }
        }
    }

    fn verdict(&self, at_end: bool) -> Shape {
        match (self.first, at_end) {
            (Some(true), true) => Shape::Calls,
            (Some(false), _) => Shape::NotCalls,
            (_, false) => Shape::Undecided,
            (None, true) => Shape::NotCalls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(text: &str, at_end: bool, offered: &[String], end_of_turn: &Markers) -> Shape {
        BareProbe::new(offered.to_vec(), end_of_turn.clone()).update(text, at_end)
    }

    #[test]
    fn growing_text_gives_what_fresh_text_gives() {
        let eot = Markers::new(["<|eot_id|>"]);
        let texts = [
            r#"{"name": "f", "parameters": {"a": "}"}}; {"name": "g", "parameters": {}}<|eot_id|>"#,
            r#"{"name": "f", "parameters": {"a": 1,}};
{"name": "g"}"#,
            r#"{"name": "Ada"} and more"#,
            "[1, 2]",
            r#"{"name": "f", "parameters": {}} prose"#,
        ];
        for text in texts {
            let mut probe = BareProbe::new(vec![], eot.clone());
            for end in (0..=text.len()).filter(|&e| text.is_char_boundary(e)) {
                let grown = probe.update(&text[..end], false);
                assert_eq!(
                    grown,
                    shape(&text[..end], false, &[], &eot),
                    "{}",
                    &text[..end]
                );
                if grown == Shape::NotCalls {
                    break;
                }
            }
            let mut probe = BareProbe::new(vec![], eot.clone());
            probe.update(&text[..text.len() / 2], false);
            assert_eq!(
                probe.update(text, true),
                shape(text, true, &[], &eot),
                "{text}"
            );
        }
    }

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
