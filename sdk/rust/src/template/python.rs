//! Python's view of template values, where it differs from minijinja's:
//! - `None` from the request is not iterable (`{% for t in tools %}` fails without tools, as in
//!   Python), see [`none`];
//! - `{{ value }}` prints `str(value)`: `None`, `True`, `1e+21`, `{'a': 1}`;
//! - transformers' `tojson` is `json.dumps`.
//!
//! The reference prompts are Python's, so these decide byte equality and which requests fail.

use std::cmp::Ordering;
use std::sync::{Arc, OnceLock};

use minijinja::value::{DynObject, Object, ObjectRepr, Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// Python's `None`, for values that come from the request (JSON `null`, a missing `content`,
/// no `tools`). minijinja's own none iterates as an empty list, so `{% for t in tools %}` would
/// render where Python raises `'NoneType' object is not iterable`; this one is not iterable.
/// The environment's `none` test recognises it, it is false, and prints as `None`.
/// (`value == none` is false for it, unlike Python; templates write `is none`.)
#[derive(Debug)]
struct PyNone;

impl Object for PyNone {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn is_true(self: &Arc<Self>) -> bool {
        false
    }

    fn custom_cmp(self: &Arc<Self>, other: &DynObject) -> Option<Ordering> {
        other.downcast_ref::<PyNone>().map(|_| Ordering::Equal)
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("None")
    }
}

/// Python's `None` (one shared value, so equal to itself).
pub fn none() -> Value {
    static NONE: OnceLock<Value> = OnceLock::new();
    NONE.get_or_init(|| Value::from_object(PyNone)).clone()
}

/// `value is none`, for both Python's and minijinja's none.
pub fn is_none(value: &Value) -> bool {
    value.is_none() || value.downcast_object_ref::<PyNone>().is_some()
}

/// `value is iterable` as Python answers it: strings, lists, dicts and undefined values are;
/// `None`, numbers and booleans are not.
pub fn is_iterable(value: &Value) -> bool {
    !is_none(value) && value.try_iter().is_ok()
}

/// The layout options of `json.dumps` that templates pass to `tojson`.
pub struct JsonStyle {
    /// `indent`: `None` writes everything on one line; a string (or that many spaces) puts each
    /// item on its own line, indented by it once per level.
    pub indent: Option<String>,
    /// `separators`: between items and between a key and its value.
    pub item_separator: String,
    pub key_separator: String,
    pub ensure_ascii: bool,
    pub sort_keys: bool,
}

impl JsonStyle {
    /// Python's defaults: `", "` between items, or `","` when indenting (the line break
    /// separates them then), and `": "` after keys.
    pub fn new(indent: Option<String>) -> Self {
        JsonStyle {
            item_separator: if indent.is_some() { "," } else { ", " }.to_string(),
            key_separator: ": ".to_string(),
            indent,
            ensure_ascii: false,
            sort_keys: false,
        }
    }
}

fn not_serializable(value: &Value) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("Object of type {} is not JSON serializable", value.kind()),
    )
}

/// `json.dumps(value, ...)`.
pub fn dumps(value: &Value, style: &JsonStyle) -> Result<String, Error> {
    let mut out = String::new();
    write_json(&mut out, value, style, 0)?;
    Ok(out)
}

fn newline(out: &mut String, style: &JsonStyle, depth: usize) {
    if let Some(indent) = &style.indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(indent);
        }
    }
}

fn write_json(
    out: &mut String,
    value: &Value,
    style: &JsonStyle,
    depth: usize,
) -> Result<(), Error> {
    if is_none(value) {
        out.push_str("null");
        return Ok(());
    }
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&number(value, Float::Json)),
        ValueKind::String => write_json_str(out, value.as_str().unwrap_or_default(), style),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_separator);
                }
                newline(out, style, depth + 1);
                write_json(out, item, style, depth + 1)?;
            }
            newline(out, style, depth);
            out.push(']');
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((json_key(&key)?, item));
            }
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_separator);
                }
                newline(out, style, depth + 1);
                write_json_str(out, key, style);
                out.push_str(&style.key_separator);
                write_json(out, item, style, depth + 1)?;
            }
            newline(out, style, depth);
            out.push('}');
        }
        _ => return Err(not_serializable(value)),
    }
    Ok(())
}

/// Keys as `json.dumps` writes them: strings as they are, numbers, booleans and `None` as text.
fn json_key(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::Number => Ok(number(key, Float::Json)),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_string()),
        _ if is_none(key) => Ok("null".to_string()),
        _ => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "keys must be str, int, float, bool or None, not {}",
                key.kind()
            ),
        )),
    }
}

fn write_json_str(out: &mut String, s: &str, style: &JsonStyle) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            // ensure_ascii escapes everything outside ' '..='~', as UTF-16 units.
            c if style.ensure_ascii && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Where a float is written: `json.dumps` and `str()` agree except for the non-finite ones.
#[derive(Clone, Copy)]
enum Float {
    Json,
    Str,
}

fn number(value: &Value, context: Float) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    match f64::try_from(value.clone()) {
        Ok(f) => float(f, context),
        Err(_) => value.to_string(),
    }
}

/// `repr(float)`: the shortest text that reads back as the same number, in positional
/// notation from 1e-4 up to 1e16 (with `.0` when integral), otherwise as `1.5e-07` / `1e+21`.
fn float(f: f64, context: Float) -> String {
    if f.is_nan() {
        return match context {
            Float::Json => "NaN",
            Float::Str => "nan",
        }
        .to_string();
    }
    if f.is_infinite() {
        let text = match context {
            Float::Json => "Infinity",
            Float::Str => "inf",
        };
        return if f < 0.0 {
            format!("-{text}")
        } else {
            text.to_string()
        };
    }
    // Rust's `{:e}` gives the same shortest digits, as `d.ddde-7`.
    let scientific = format!("{f:e}");
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return scientific;
    };
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..16).contains(&exponent) {
        let positional = format!("{f}");
        if positional.contains('.') {
            positional
        } else {
            format!("{positional}.0")
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
    }
}

/// `str(value)`, what Python prints for `{{ value }}` and `value|string`.
pub fn python_str(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::String => value.as_str().unwrap_or_default().to_string(),
        _ => python_repr(value),
    }
}

/// `repr(value)`: how Python writes values inside lists and dicts.
fn python_repr(value: &Value) -> String {
    if is_none(value) {
        return "None".to_string();
    }
    match value.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::Bool => if value.is_true() { "True" } else { "False" }.to_string(),
        ValueKind::Number => number(value, Float::Str),
        ValueKind::String => repr_str(value.as_str().unwrap_or_default()),
        ValueKind::Seq => match value.try_iter() {
            Ok(items) => {
                let items: Vec<String> = items.map(|v| python_repr(&v)).collect();
                format!("[{}]", items.join(", "))
            }
            Err(_) => value.to_string(),
        },
        ValueKind::Map => match value.try_iter() {
            Ok(keys) => {
                let items: Vec<String> = keys
                    .map(|k| {
                        let v = value.get_item(&k).unwrap_or_default();
                        format!("{}: {}", python_repr(&k), python_repr(&v))
                    })
                    .collect();
                format!("{{{}}}", items.join(", "))
            }
            Err(_) => value.to_string(),
        },
        _ => value.to_string(),
    }
}

/// `repr(str)`: single quotes unless the text holds one and no double quote.
fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str, style: &JsonStyle) -> String {
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        dumps(&super::super::context::value(&value), style).unwrap()
    }

    #[test]
    fn floats_read_like_python() {
        let cases = [
            (0.25, "0.25"),
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (1e21, "1e+21"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (-1.5e-7, "-1.5e-07"),
            (123456.789, "123456.789"),
            (2.5e-100, "2.5e-100"),
        ];
        for (f, text) in cases {
            assert_eq!(float(f, Float::Json), text, "{f}");
        }
        assert_eq!(float(f64::INFINITY, Float::Json), "Infinity");
        assert_eq!(float(f64::NEG_INFINITY, Float::Str), "-inf");
    }

    #[test]
    fn dumps_like_python() {
        let text = r#"{"z": [1, 2.5, null, true], "a": {}, "s": "<é>\n\"\u0001", "e": []}"#;
        assert_eq!(
            json(text, &JsonStyle::new(None)),
            r#"{"z": [1, 2.5, null, true], "a": {}, "s": "<é>\n\"\u0001", "e": []}"#
        );
        assert_eq!(
            json(
                r#"{"a": [1, {"b": 2}], "c": {}}"#,
                &JsonStyle::new(Some("  ".into()))
            ),
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": 2\n    }\n  ],\n  \"c\": {}\n}"
        );
        let mut ascii = JsonStyle::new(None);
        ascii.ensure_ascii = true;
        ascii.sort_keys = true;
        assert_eq!(
            json(r#"{"b": "é🌧\u007f", "a": 1}"#, &ascii),
            r#"{"a": 1, "b": "\u00e9\ud83c\udf27\u007f"}"#
        );
    }

    #[test]
    fn str_like_python() {
        let value: serde_json::Value =
            serde_json::from_str(r#"{"a": [1, 1.5, null, true, "it's"], "b": "x'\"y"}"#).unwrap();
        let value = super::super::context::value(&value);
        assert_eq!(
            python_str(&value),
            r#"{'a': [1, 1.5, None, True, "it's"], 'b': 'x\'"y'}"#
        );
        assert_eq!(python_str(&Value::from(false)), "False");
        assert_eq!(python_str(&Value::from(())), "None");
        assert_eq!(python_str(&none()), "None");
        assert!(is_none(&none()) && !is_iterable(&none()) && !none().is_true());
        assert!(is_iterable(&Value::from("ab")) && is_iterable(&Value::UNDEFINED));
        assert_eq!(python_str(&Value::from("plain")), "plain");
    }
}
