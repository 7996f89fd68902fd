//! Outputs that are calls by their whole shape rather than by markup: a bare JSON object such as
//! Llama 3's `{"name": …, "parameters": …}`, a JSON call in a markdown fence (what small models
//! write when they mean a call), or a list of them.
//!
//! Such an output can only be recognised once it is complete, so a stream parser holds it back
//! while it [could still be](WholeRule::could_be) calls, and reads it at the end.

use crate::json::{JsonScanner, arguments_text};
use crate::types::ParseOptions;

/// A call read from a whole output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WholeCall {
    pub name: String,
    /// The text of a JSON object.
    pub arguments: String,
}

/// A way for a whole output to be calls.
#[derive(Clone, Copy, Debug)]
pub struct WholeRule {
    /// Whether the output so far (reasoning and leading whitespace removed) may still turn out
    /// to be calls. While true, the parser holds the output back.
    pub could_be: fn(&str) -> bool,
    /// Reads the complete output (reasoning removed, trimmed) as calls, or `None` when it is not.
    pub read: fn(&str, &ParseOptions) -> Option<Vec<WholeCall>>,
}

impl WholeRule {
    /// `--lenient`: one JSON object, bare or in a markdown fence, or a list of them, every one
    /// naming an offered tool.
    pub const LENIENT_JSON: WholeRule = WholeRule {
        could_be: could_be_json,
        read: read_lenient_json,
    };

    /// A family whose native format is bare JSON calls (Llama 3.x): objects with `"name"` and
    /// `"parameters"` or `"arguments"`. Names need not be offered (unknown ones are reported).
    pub const BARE_JSON: WholeRule = WholeRule {
        could_be: could_be_json,
        read: read_bare_json,
    };
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

fn read_lenient_json(text: &str, options: &ParseOptions) -> Option<Vec<WholeCall>> {
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
    fn fences_are_removed() {
        assert_eq!(unfence("```json\n{}\n```"), Some("{}"));
        assert_eq!(unfence(" {} "), Some("{}"));
        assert_eq!(unfence("```rust\n{}\n```"), None);
    }
}
