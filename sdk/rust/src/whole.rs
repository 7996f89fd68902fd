//! Outputs that are calls by their whole shape rather than by markup: a bare JSON object such as
//! Llama 3's `{"name": …, "parameters": …}`, a JSON call in a markdown fence (what small models
//! write when they mean a call), or a list of them.
//!
//! Such an output can only be recognised once it is complete, so a stream parser holds it back
//! while it [could still be](WholeRule::could_be) calls, and reads it at the end.

use std::borrow::Cow;

use crate::json::{JsonScanner, arguments_text};
use crate::types::ParseOptions;

/// A call read from a whole output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WholeCall {
    pub name: String,
    /// The text of a JSON object.
    pub arguments: String,
}

/// How a stream parser decides, while an output grows, whether it may still be calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Ask [`WholeRule::could_be`] with the whole output so far on every push (simple; fine
    /// while such outputs are short).
    Custom,
    /// One JSON value, bare or in a ` ```json ` fence, checked incrementally (each byte is read
    /// once, however long the output).
    Json,
    /// Like `Json`, and the value must be an object or a list whose first element is an object.
    JsonCalls,
}

/// A way for a whole output to be calls.
#[derive(Clone, Copy, Debug)]
pub struct WholeRule {
    /// Whether the output so far (reasoning and leading whitespace removed) may still turn out
    /// to be calls. While true, the parser holds the output back. Used for [`Shape::Custom`].
    pub could_be: fn(&str) -> bool,
    /// Reads the complete output (reasoning removed, trimmed) as calls, or `None` when it is not.
    pub read: fn(&str, &ParseOptions) -> Option<Vec<WholeCall>>,
    /// How `could_be` is decided while streaming.
    pub shape: Shape,
}

impl WholeRule {
    /// `--lenient`: one JSON object, bare or in a markdown fence, or a list of them, every one
    /// naming an offered tool.
    pub const LENIENT_JSON: WholeRule = WholeRule {
        could_be: could_be_json,
        read: read_lenient_json,
        shape: Shape::JsonCalls,
    };

    /// `--lenient`: a call written as a sentence, "I'll use the run_analysis tool with
    /// variables=['a']", when it names an offered tool and its arguments fit the schema (see
    /// the `natural` module).
    pub const NATURAL: WholeRule = WholeRule {
        could_be: crate::natural::could_be,
        read: crate::natural::read_call,
        shape: Shape::Custom,
    };

    /// A family whose native format is bare JSON calls (Llama 3.x): objects with `"name"` and
    /// `"parameters"` or `"arguments"`. Names need not be offered (unknown ones are reported).
    pub const BARE_JSON: WholeRule = WholeRule {
        could_be: could_be_json,
        read: read_bare_json,
        shape: Shape::JsonCalls,
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Leading whitespace, or the start of a fence.
    Lead,
    /// The fence's info string, up to its line break.
    FenceInfo,
    Body,
    /// After the value: whitespace, the closing fence, end-of-turn markers.
    After,
    /// Cannot be calls any more.
    Dead,
}

/// The incremental check behind [`Shape::Json`] and [`Shape::JsonCalls`]: fed the output piece
/// by piece, it says whether the output may still be one (fenced) JSON value of the right kind.
#[derive(Clone, Debug)]
pub struct JsonShape {
    calls_only: bool,
    end_of_turn: Vec<Cow<'static, str>>,
    stage: Stage,
    held: String,
    fenced: bool,
    scanner: JsonScanner,
    top_is_list: bool,
    /// For `calls_only` lists: the first element has been checked to be an object.
    first_checked: bool,
}

impl JsonShape {
    pub fn new(shape: Shape, end_of_turn: &[Cow<'static, str>]) -> JsonShape {
        JsonShape {
            calls_only: shape == Shape::JsonCalls,
            end_of_turn: end_of_turn.to_vec(),
            stage: Stage::Lead,
            held: String::new(),
            fenced: false,
            scanner: JsonScanner::new(),
            top_is_list: false,
            first_checked: false,
        }
    }

    /// Whether what follows the value can still be right: whitespace, the closing fence, and
    /// end-of-turn markers (the last one possibly cut short).
    fn tail_ok(&self) -> bool {
        let mut tail = self.held.trim_start();
        if self.fenced {
            match tail.strip_prefix("```") {
                Some(rest) => tail = rest.trim_start(),
                None => return "```".starts_with(tail.trim_end()),
            }
        }
        loop {
            if tail.is_empty() {
                return true;
            }
            match self.end_of_turn.iter().find(|m| tail.starts_with(&***m)) {
                Some(m) => tail = tail[m.len()..].trim_start(),
                None => return self.end_of_turn.iter().any(|m| m.starts_with(tail)),
            }
        }
    }

    fn body_byte(&mut self, b: u8) {
        let fed = match self.scanner.feed(b) {
            Ok(fed) => fed,
            Err(_) => {
                self.stage = Stage::Dead;
                return;
            }
        };
        for event in fed.iter() {
            if let crate::json::JsonEvent::ValueStart { depth, kind } = event {
                use crate::json::ValueKind;
                let ok = match depth {
                    // A top-level value must be a container: bare words and numbers are prose.
                    0 => {
                        self.top_is_list = kind == ValueKind::Array;
                        matches!(kind, ValueKind::Object | ValueKind::Array)
                    }
                    1 if self.calls_only && self.top_is_list && !self.first_checked => {
                        self.first_checked = true;
                        kind == ValueKind::Object
                    }
                    _ => true,
                };
                if !ok {
                    self.stage = Stage::Dead;
                    return;
                }
            }
        }
        if self.scanner.is_done() {
            self.stage = Stage::After;
        }
    }

    /// Takes the next piece of the output; returns whether it may still be calls.
    pub fn feed(&mut self, text: &str) -> bool {
        for c in text.chars() {
            match self.stage {
                Stage::Dead => return false,
                Stage::Lead => {
                    if self.held.is_empty() && c.is_whitespace() {
                        continue;
                    }
                    self.held.push(c);
                    if self.held == "```" {
                        self.held.clear();
                        self.fenced = true;
                        self.stage = Stage::FenceInfo;
                    } else if !"```".starts_with(self.held.as_str()) {
                        let held = std::mem::take(&mut self.held);
                        self.stage = Stage::Body;
                        for b in held.bytes() {
                            if self.stage == Stage::Body {
                                self.body_byte(b);
                            }
                        }
                    }
                }
                Stage::FenceInfo => {
                    if c == '\n' {
                        let info = self.held.trim();
                        let ok = info.is_empty() || info.eq_ignore_ascii_case("json");
                        self.held.clear();
                        self.stage = if ok { Stage::Body } else { Stage::Dead };
                    } else {
                        self.held.push(c);
                        let info = self.held.trim_start().to_ascii_lowercase();
                        if !"json".starts_with(info.trim_end()) {
                            self.stage = Stage::Dead;
                        }
                    }
                }
                Stage::Body => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        if self.stage == Stage::Body {
                            self.body_byte(b);
                        }
                    }
                }
                Stage::After => {
                    self.held.push(c);
                    if !self.tail_ok() {
                        self.stage = Stage::Dead;
                    }
                }
            }
        }
        self.stage != Stage::Dead
    }
}

/// Splits an output into the JSON text inside an optional markdown fence.
/// Returns `None` when the output is not one JSON-looking block.
pub fn unfence(text: &str) -> Option<&str> {
    let text = text.trim();
    if let Some(inner) = text.strip_prefix("```") {
        let newline = inner.find('\n')?;
        let info = inner[..newline].trim();
        if !(info.is_empty() || info.eq_ignore_ascii_case("json")) {
            return None;
        }
        let body = inner[newline + 1..].trim_end();
        let body = body.strip_suffix("```")?;
        return Some(body.trim());
    }
    Some(text)
}

/// Whether `prefix` may grow into one JSON value, bare or fenced (` ```json `).
pub fn could_be_json(prefix: &str) -> bool {
    let prefix = prefix.trim_start();
    let (json, fenced) = match prefix.strip_prefix("```") {
        Some(inner) => match inner.find('\n') {
            Some(newline) => {
                let info = inner[..newline].trim();
                if !(info.is_empty() || info.eq_ignore_ascii_case("json")) {
                    return false;
                }
                (&inner[newline + 1..], true)
            }
            None => return "json".starts_with(inner.trim()) || inner.trim().is_empty(),
        },
        None if "```".starts_with(prefix) => return true,
        None => (prefix, false),
    };
    let mut scanner = JsonScanner::new();
    for (i, b) in json.bytes().enumerate() {
        if scanner.is_done() {
            let tail = json[i..].trim_start();
            return if fenced {
                // Only the closing fence may follow.
                "```".starts_with(tail.trim_end()) || tail.trim_end() == "```"
            } else {
                tail.is_empty()
            };
        }
        if scanner.feed(b).is_err() {
            return false;
        }
    }
    // A top-level value must be a container: bare words and numbers are prose.
    scanner.is_empty() || scanner.depth() > 0 || scanner.is_done()
}

fn call_objects(text: &str) -> Option<Vec<serde_json::Map<String, serde_json::Value>>> {
    let json = unfence(text)?;
    match serde_json::from_str::<serde_json::Value>(json).ok()? {
        serde_json::Value::Object(o) => Some(vec![o]),
        serde_json::Value::Array(items) if !items.is_empty() => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::Object(o) => Some(o),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// The name and arguments of a call object, `{"function": {…}}` wrappers included.
fn call_of(
    object: &serde_json::Map<String, serde_json::Value>,
) -> Option<(String, Option<String>)> {
    if let Some(serde_json::Value::Object(inner)) = object.get("function") {
        return call_of(inner);
    }
    let name = object.get("name")?.as_str()?.trim().to_string();
    if name.is_empty() {
        return None;
    }
    let args = ["arguments", "parameters"]
        .iter()
        .find_map(|k| object.get(*k))
        .map(|v| serde_json::to_string(v).unwrap_or_default());
    Some((name, args))
}

fn read_calls(text: &str, accept: impl Fn(&str, bool) -> bool) -> Option<Vec<WholeCall>> {
    call_objects(text)?
        .iter()
        .map(|object| {
            let (name, args) = call_of(object)?;
            if !accept(&name, args.is_some()) {
                return None;
            }
            let arguments = arguments_text(args.as_deref().unwrap_or("{}")).ok()?;
            Some(WholeCall { name, arguments })
        })
        .collect()
}

/// Lenient calls: every object names an offered tool.
pub(crate) fn read_lenient_json(text: &str, options: &ParseOptions) -> Option<Vec<WholeCall>> {
    read_calls(text, |name, _| options.tools.iter().any(|t| t.name == name))
}

fn read_bare_json(text: &str, _options: &ParseOptions) -> Option<Vec<WholeCall>> {
    read_calls(text, |_, has_args| has_args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_of_calls_could_be_calls() {
        let whole = "```json\n{\"name\": \"f\", \"arguments\": {\"a\": \"}\"}}\n```";
        for end in 0..=whole.len() {
            assert!(could_be_json(&whole[..end]), "{:?}", &whole[..end]);
        }
        assert!(!could_be_json("Sure, "));
        assert!(!could_be_json("{\"a\": 1} and more"));
        assert!(!could_be_json("```python\n"));
        assert!(!could_be_json("42 is"));
    }

    #[test]
    fn the_incremental_check_agrees_with_the_whole_one() {
        let eot = [Cow::Borrowed("<|im_end|>")];
        let cases = [
            (
                "```json\n{\"name\": \"f\", \"arguments\": {\"a\": \"}\"}}\n```<|im_end|>",
                true,
            ),
            ("[{\"name\": \"f\"}, {\"name\": \"g\"}]", true),
            ("  {\"a\": 1}  <|im_", true),
            ("[1, 2]", false),
            ("{\"a\": 1} and more", false),
            ("```python\nprint(1)\n```", false),
            ("Sure, {\"a\": 1}", false),
            ("42", false),
        ];
        for (text, whole) in cases {
            for size in [1, 2, 3, 7, 100] {
                let mut shape = JsonShape::new(Shape::JsonCalls, &eot);
                let chars: Vec<char> = text.chars().collect();
                let mut alive = true;
                for chunk in chars.chunks(size) {
                    alive = shape.feed(&chunk.iter().collect::<String>());
                }
                assert_eq!(alive, whole, "{text:?} in chunks of {size}");
            }
        }
    }

    #[test]
    fn fences_are_removed() {
        assert_eq!(unfence("```json\n{}\n```"), Some("{}"));
        assert_eq!(unfence(" {} "), Some("{}"));
        assert_eq!(unfence("```rust\n{}\n```"), None);
    }
}
