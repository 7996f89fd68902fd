//! A call written as a sentence, read in lenient mode: "I'll use the run_analysis tool with
//! variables=['var1', 'var2']". Small models write this when a prompt describes tools in
//! prose (the `tool-use` family's). Only a whole output of that one shape is a call, and only
//! when it names an offered tool and every argument fits the tool's schema (a property of
//! it, of its type and enum, every required one given); anything else stays content, so
//! prose that merely mentions a tool is never a call.
//!
//! The shape: an optional lead-in (`I'll`, `Let me` …), a verb (`use`, `call`, `run`,
//! `invoke`), optionally `the`, the tool's name (bare, or in backticks or quotes), optionally
//! `tool` or `function`, then `with`, `using` or `:` and `name=value` pairs (Python or JSON
//! literals) separated by commas or `and`, or the same pairs in parentheses right after the
//! name; a full stop may end it.

use serde_json::{Map, Number, Value};

use crate::grammar::parameters;
use crate::types::ParseOptions;
use crate::whole::WholeCall;

/// How far a text goes toward the shape.
#[derive(Debug, PartialEq)]
enum Read<T> {
    /// The whole text has the shape.
    Whole(T),
    /// The text ends before the shape does: it may still grow into it.
    Prefix,
    No,
}

const LEADS: [&str; 9] = [
    "",
    "i'll ",
    "i’ll ",
    "i will ",
    "let me ",
    "i'm going to ",
    "i am going to ",
    "now i'll ",
    "i need to ",
];
const VERBS: [&str; 6] = ["use ", "call ", "run ", "invoke ", "using ", "calling "];
const NOUNS: [&str; 2] = [" tool", " function"];
const OPENERS: [&str; 3] = [" with ", " using ", ": "];
const SEPARATORS: [&str; 3] = [", and ", ", ", " and "];

/// Whether the output so far may still become a call of this shape (used while streaming).
pub(crate) fn could_be(text: &str) -> bool {
    !matches!(read(text.trim_start(), false), Read::No)
}

/// The output as a call of an offered tool whose arguments fit its schema, or `None`.
pub(crate) fn read_call(text: &str, options: &ParseOptions) -> Option<Vec<WholeCall>> {
    let Read::Whole((name, arguments)) = read(text.trim(), true) else {
        return None;
    };
    let tool = options.tools.iter().find(|t| t.name == name)?;
    if !fits(&arguments, &parameters(tool)) {
        return None;
    }
    Some(vec![WholeCall {
        name,
        arguments: Value::Object(arguments).to_string(),
    }])
}

/// Reads the sentence: the tool's name and its arguments. `complete`: the text is the whole
/// output (a word at its end is not cut short).
fn read(text: &str, complete: bool) -> Read<(String, Map<String, Value>)> {
    let mut best = Read::No;
    // Every lead-in and verb that the text starts with (or could still start with).
    for lead in LEADS {
        for verb in VERBS {
            for article in ["the ", ""] {
                let head = format!("{lead}{verb}{article}");
                if text.len() < head.len() {
                    if head
                        .get(..text.len())
                        .is_some_and(|h| h.eq_ignore_ascii_case(text))
                    {
                        best = Read::Prefix;
                    }
                    continue;
                }
                if !text[..]
                    .get(..head.len())
                    .is_some_and(|h| h.eq_ignore_ascii_case(&head))
                {
                    continue;
                }
                let mut s = Cursor {
                    text: &text[head.len()..],
                    at: 0,
                    complete,
                };
                match after_verb(&mut s) {
                    Read::Whole(call) => return Read::Whole(call),
                    Read::Prefix => best = Read::Prefix,
                    Read::No => {}
                }
            }
        }
    }
    best
}

fn after_verb(s: &mut Cursor) -> Read<(String, Map<String, Value>)> {
    let text = s.text;
    let quote = s
        .rest()
        .chars()
        .next()
        .filter(|c| matches!(c, '`' | '"' | '\''));
    if let Some(q) = quote {
        s.at += q.len_utf8();
    }
    let name_start = s.at;
    s.take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let name = text[name_start..s.at].trim_end_matches('.').to_string();
    s.at = name_start + name.len();
    if s.at_end() {
        return Read::Prefix;
    }
    if name.is_empty() {
        return Read::No;
    }
    if let Some(q) = quote {
        if !s.eat(&q.to_string()) {
            return Read::No;
        }
        if s.at_end() {
            return Read::Prefix;
        }
    }
    if s.eat("(") {
        return pairs(s, Some(')')).map(|arguments| (name, arguments));
    }
    match s.one_of_ci(&NOUNS) {
        Read::Prefix => return Read::Prefix,
        Read::Whole(_) | Read::No => {}
    }
    match s.one_of_ci(&OPENERS) {
        Read::Whole(_) => {}
        Read::Prefix => return Read::Prefix,
        Read::No => return Read::No,
    }
    pairs(s, None).map(|arguments| (name, arguments))
}

/// `name=value` pairs to the end of the text (or to `close`), then an optional full stop.
fn pairs(s: &mut Cursor, close: Option<char>) -> Read<Map<String, Value>> {
    let mut arguments = Map::new();
    loop {
        s.skip_spaces();
        if s.at_end() {
            return Read::Prefix;
        }
        if close.is_some_and(|c| s.eat(&c.to_string())) && arguments.is_empty() {
            return end(s, arguments);
        }
        let key_start = s.at;
        s.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
        let key = s.text[key_start..s.at].to_string();
        s.skip_spaces();
        if s.at_end() {
            return Read::Prefix;
        }
        if key.is_empty() || !s.eat("=") || arguments.contains_key(&key) {
            return Read::No;
        }
        s.skip_spaces();
        match literal(s) {
            Read::Whole(value) => {
                arguments.insert(key, value);
            }
            Read::Prefix => return Read::Prefix,
            Read::No => return Read::No,
        }
        if s.at_end() {
            // Complete as it is, or the start of what follows.
            return match close {
                Some(_) => Read::Prefix,
                None => Read::Whole(arguments),
            };
        }
        if let Some(c) = close
            && s.eat(&c.to_string())
        {
            return end(s, arguments);
        }
        match s.one_of(&SEPARATORS) {
            Read::Whole(_) => {}
            Read::Prefix => return Read::Prefix,
            Read::No => return end(s, arguments),
        }
    }
}

/// After the arguments: a full stop and blank space, nothing else.
fn end<T>(s: &mut Cursor, value: T) -> Read<T> {
    let rest = s.rest().trim_end();
    if rest.is_empty() || rest == "." {
        Read::Whole(value)
    } else {
        Read::No
    }
}

/// A Python or JSON literal: a string, a number, `True`/`true`, `False`/`false`,
/// `None`/`null`, a list or a dict of them.
fn literal(s: &mut Cursor) -> Read<Value> {
    let Some(first) = s.rest().chars().next() else {
        return Read::Prefix;
    };
    match first {
        '"' | '\'' => string(s, first).map(Value::String),
        '[' => {
            s.at += 1;
            let mut items = Vec::new();
            loop {
                s.skip_spaces();
                if s.at_end() {
                    return Read::Prefix;
                }
                if s.eat("]") {
                    return Read::Whole(Value::Array(items));
                }
                if !items.is_empty() {
                    if !s.eat(",") {
                        return Read::No;
                    }
                    s.skip_spaces();
                    if s.eat("]") {
                        return Read::Whole(Value::Array(items));
                    }
                }
                match literal(s) {
                    Read::Whole(v) => items.push(v),
                    other => return other,
                }
            }
        }
        '{' => {
            s.at += 1;
            let mut object = Map::new();
            loop {
                s.skip_spaces();
                if s.at_end() {
                    return Read::Prefix;
                }
                if s.eat("}") {
                    return Read::Whole(Value::Object(object));
                }
                if !object.is_empty() {
                    if !s.eat(",") {
                        return Read::No;
                    }
                    s.skip_spaces();
                }
                let Some(q) = s.rest().chars().next() else {
                    return Read::Prefix;
                };
                if !matches!(q, '"' | '\'') {
                    return Read::No;
                }
                let key = match string(s, q) {
                    Read::Whole(key) => key,
                    other => return other.map(|_| Value::Null),
                };
                s.skip_spaces();
                if s.at_end() {
                    return Read::Prefix;
                }
                if !s.eat(":") {
                    return Read::No;
                }
                s.skip_spaces();
                match literal(s) {
                    Read::Whole(v) => {
                        object.insert(key, v);
                    }
                    other => return other,
                }
            }
        }
        _ => {
            let start = s.at;
            s.take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'));
            let word = &s.text[start..s.at];
            // A word cut by the end of the text may still grow.
            if s.at_end() && !s.complete {
                return Read::Prefix;
            }
            let word = word
                .strip_suffix('.')
                .filter(|_| s.rest().trim().is_empty())
                .map_or(word, |w| {
                    s.at -= 1;
                    w
                });
            match word {
                "True" | "true" => Read::Whole(Value::Bool(true)),
                "False" | "false" => Read::Whole(Value::Bool(false)),
                "None" | "null" => Read::Whole(Value::Null),
                _ => number(word).map_or(Read::No, Read::Whole),
            }
        }
    }
}

fn number(word: &str) -> Option<Value> {
    if let Ok(i) = word.parse::<i64>() {
        return Some(Value::Number(i.into()));
    }
    let f = word.parse::<f64>().ok().filter(|f| f.is_finite())?;
    // Words such as `inf` or `nan` parse as floats; a number starts with a digit or a sign.
    if !word.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+' || c == '.') {
        return None;
    }
    Number::from_f64(f).map(Value::Number)
}

/// A quoted string with backslash escapes (`\n`, `\t`, `\\`, the quote).
fn string(s: &mut Cursor, quote: char) -> Read<String> {
    s.at += quote.len_utf8();
    let mut out = String::new();
    let mut chars = s.rest().char_indices();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            s.at += i + c.len_utf8();
            return Read::Whole(out);
        }
        if c == '\\' {
            match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, other)) => out.push(other),
                None => return Read::Prefix,
            }
        } else {
            out.push(c);
        }
    }
    Read::Prefix
}

impl<T> Read<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Read<U> {
        match self {
            Read::Whole(t) => Read::Whole(f(t)),
            Read::Prefix => Read::Prefix,
            Read::No => Read::No,
        }
    }
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
    /// The text is the whole output.
    complete: bool,
}

impl Cursor<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn at_end(&self) -> bool {
        self.at >= self.text.len()
    }

    fn eat(&mut self, word: &str) -> bool {
        let ok = self.rest().starts_with(word);
        if ok {
            self.at += word.len();
        }
        ok
    }

    fn skip_spaces(&mut self) {
        self.take_while(|c| c == ' ');
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) {
        let n = self
            .rest()
            .find(|c: char| !keep(c))
            .unwrap_or(self.rest().len());
        self.at += n;
    }

    /// Eats the first of `words` the text starts with; `Prefix` when the text ends inside one.
    fn one_of(&mut self, words: &[&str]) -> Read<()> {
        self.one_by(words, |rest, word| rest.starts_with(word))
    }

    /// The same, ignoring ASCII case.
    fn one_of_ci(&mut self, words: &[&str]) -> Read<()> {
        self.one_by(words, |rest, word| {
            rest.get(..word.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(word))
        })
    }

    fn one_by(&mut self, words: &[&str], starts: impl Fn(&str, &str) -> bool) -> Read<()> {
        let rest = self.rest();
        let mut prefix = false;
        for word in words {
            if starts(rest, word) {
                self.at += word.len();
                return Read::Whole(());
            }
            let n = rest.len().min(word.len());
            prefix |= rest.len() < word.len()
                && word.is_char_boundary(n)
                && rest.eq_ignore_ascii_case(&word[..n]);
        }
        if prefix { Read::Prefix } else { Read::No }
    }
}

/// Whether `arguments` fit `schema`: every argument a property of it, of its type and in its
/// enum; every required property given.
fn fits(arguments: &Map<String, Value>, schema: &Value) -> bool {
    let properties = schema.get("properties").and_then(Value::as_object);
    let required = schema.get("required").and_then(Value::as_array);
    if let Some(required) = required
        && required
            .iter()
            .filter_map(Value::as_str)
            .any(|name| !arguments.contains_key(name))
    {
        return false;
    }
    arguments.iter().all(|(name, value)| {
        properties
            .and_then(|p| p.get(name))
            .is_some_and(|property| value_fits(value, property))
    })
}

fn value_fits(value: &Value, schema: &Value) -> bool {
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        return false;
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return true,
    };
    types.iter().any(|t| match (*t, value) {
        ("string", Value::String(_)) | ("boolean", Value::Bool(_)) | ("null", Value::Null) => true,
        ("number", Value::Number(_)) => true,
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        ("array", Value::Array(items)) => schema
            .get("items")
            .is_none_or(|item| items.iter().all(|v| value_fits(v, item))),
        ("object", Value::Object(o)) => {
            schema.get("properties").is_none() && schema.get("required").is_none()
                || fits(o, schema)
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Tool;

    fn options() -> ParseOptions {
        let tool = |name: &str, parameters: &str| Tool {
            name: name.into(),
            description: None,
            parameters: parameters.into(),
        };
        ParseOptions {
            tools: vec![
                tool(
                    "run_analysis",
                    r#"{"type": "object", "properties": {"variables": {"type": "array", "items": {"type": "string"}}, "alpha": {"type": "number"}}, "required": ["variables"]}"#,
                ),
                tool(
                    "get_weather",
                    r#"{"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}"#,
                ),
            ],
            reasoning_open: false,
            lenient: true,
        }
    }

    fn call(text: &str) -> Option<(String, Value)> {
        let calls = read_call(text, &options())?;
        Some((
            calls[0].name.clone(),
            serde_json::from_str(&calls[0].arguments).unwrap(),
        ))
    }

    #[test]
    fn sentences_that_call_an_offered_tool_with_fitting_arguments_are_calls() {
        let cases = [
            (
                "I'll use the run_analysis tool with variables=['var1', 'var2']",
                "run_analysis",
                r#"{"variables": ["var1", "var2"]}"#,
            ),
            (
                "Let me call `get_weather` with city=\"Paris\", unit='c'.",
                "get_weather",
                r#"{"city": "Paris", "unit": "c"}"#,
            ),
            (
                "Using get_weather(city='Oslo')",
                "get_weather",
                r#"{"city": "Oslo"}"#,
            ),
            (
                "I will use the run_analysis function: variables=[\"x\"] and alpha=0.05.",
                "run_analysis",
                r#"{"variables": ["x"], "alpha": 0.05}"#,
            ),
        ];
        for (text, name, arguments) in cases {
            let expected: Value = serde_json::from_str(arguments).unwrap();
            assert_eq!(call(text), Some((name.into(), expected)), "{text}");
            // Every prefix may still become it, while streaming.
            for (i, _) in text.char_indices() {
                assert!(could_be(&text[..i]), "{:?}", &text[..i]);
            }
        }
    }

    #[test]
    fn anything_else_stays_content() {
        let cases = [
            // Prose that mentions a tool.
            "I'll use the get_weather tool to find out.",
            "You can call get_weather with a city name.",
            // A tool not offered; an argument not in the schema; a wrong type; not in the
            // enum; a required argument missing.
            "I'll use book_flight with city='Paris'",
            "I'll use get_weather with town='Paris'",
            "I'll use get_weather with city=3",
            "I'll use get_weather with city='Paris', unit='k'",
            "I'll use run_analysis with alpha=0.1",
            // More after the call.
            "I'll use get_weather with city='Paris'. Then I will tell you.",
            "Sure! I'll use get_weather with city='Paris'",
        ];
        for text in cases {
            assert_eq!(call(text), None, "{text}");
        }
        assert!(!could_be("The weather"));
        assert!(!could_be("I'll use the information to answer"));
        assert!(!could_be("Sure! I'll"));
    }
}
