//! An incremental JSON reader: bytes go in one at a time, and it says where values start and
//! end, which key each value belongs to, and the exact byte where the text stops being JSON.
//!
//! Stream parsers use it to send a tool call's arguments while they are generated, to know the
//! moment a call object is complete, and to report `malformed-json` at the first bad byte rather
//! than at the end. It validates the full grammar (strings, escapes, `\u` sequences, numbers,
//! literals), so a brace inside a string never confuses it.

/// What kind of value starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Object,
    Array,
    String,
    Number,
    Literal,
}

/// Something that happened at one byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonEvent {
    /// A value starts at this byte. `depth` is the number of containers around it.
    ValueStart { depth: usize, kind: ValueKind },
    /// The value at `depth` ended. `inclusive` is false for a number, which ends *before* the
    /// byte that shows it is over (a delimiter that belongs to the enclosing container).
    ValueEnd { depth: usize, inclusive: bool },
    /// An object key ended at this byte; [`JsonScanner::key`] holds its raw text.
    KeyEnd { depth: usize },
}

/// The text is not JSON: the byte at which it stopped being JSON, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonError {
    pub message: String,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    Backslash,
    /// Inside `\uXXXX`: hex digits still expected, the code unit read so far, and whether it
    /// must be a low surrogate (the escape before it was a high one).
    Unicode {
        left: u8,
        unit: u16,
        low: bool,
    },
    /// After the escape of a high surrogate: the escape of a low one must follow. A surrogate
    /// without its other half is no text, and serde_json (which the host reads arguments with)
    /// rejects it, so the scanner does too.
    HighSurrogate,
    /// The `\` of the low surrogate's escape.
    HighBackslash,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl Num {
    fn can_end(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// A value must come (top level, after `:`, after `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    ValueOrClose,
    /// After `{`: a key or `}`.
    KeyOrClose,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value inside a container: `,` or the closing bracket.
    CommaOrClose,
    Str {
        key: bool,
        escape: Escape,
    },
    Num(Num),
    Literal {
        word: &'static [u8],
        pos: u8,
    },
    /// The top-level value is complete.
    Done,
}

/// Reads one JSON value (plus surrounding whitespace) incrementally.
#[derive(Clone, Debug)]
pub struct JsonScanner {
    stack: Vec<Container>,
    state: State,
    key: Vec<u8>,
    error: Option<JsonError>,
    offset: usize,
    /// The text of the number being read, to check its range at its end.
    number: Vec<u8>,
}

/// The deepest nesting read: serde_json, which the host reads arguments with, refuses a 128th
/// nested container, and a call the host cannot read would fail the whole response.
const MAX_DEPTH: usize = 127;

impl Default for JsonScanner {
    fn default() -> Self {
        Self::new()
    }
}

/// Up to two events per byte: a number ending, then whatever the delimiter does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fed {
    pub first: Option<JsonEvent>,
    pub second: Option<JsonEvent>,
}

impl Fed {
    fn push(&mut self, event: JsonEvent) {
        if self.first.is_none() {
            self.first = Some(event);
        } else {
            self.second = Some(event);
        }
    }

    /// The events, in order.
    pub fn iter(&self) -> impl Iterator<Item = JsonEvent> {
        self.first.into_iter().chain(self.second)
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl JsonScanner {
    pub fn new() -> Self {
        JsonScanner {
            stack: Vec::new(),
            state: State::Value,
            key: Vec::new(),
            error: None,
            offset: 0,
            number: Vec::new(),
        }
    }

    /// Open containers around the current position.
    pub fn depth(&self) -> usize {
        self.stack.len()
    }

    /// The raw text (escapes undecoded) of the last key read.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The top-level value is complete. Only whitespace may follow.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Nothing but whitespace has been read.
    pub fn is_empty(&self) -> bool {
        self.state == State::Value && self.stack.is_empty()
    }

    /// The first error, if the text stopped being JSON.
    pub fn error(&self) -> Option<&JsonError> {
        self.error.as_ref()
    }

    /// A top-level number or literal can only end at end of input: call this there.
    /// Returns the end event if it completed the top-level value.
    pub fn end_of_input(&mut self) -> Option<JsonEvent> {
        if self.stack.is_empty()
            && let State::Num(n) = self.state
            && n.can_end()
        {
            if !self.number_in_range() {
                self.error = Some(JsonError {
                    message: format!(
                        "invalid JSON at byte {}: the number is beyond a 64-bit float",
                        self.offset
                    ),
                });
                return None;
            }
            self.state = State::Done;
            return Some(JsonEvent::ValueEnd {
                depth: 0,
                inclusive: false,
            });
        }
        None
    }

    fn fail(&mut self, b: u8, what: &str) -> JsonError {
        let shown = if b.is_ascii_graphic() || b == b' ' {
            format!("'{}'", b as char)
        } else {
            format!("byte 0x{b:02x}")
        };
        let error = JsonError {
            message: format!(
                "invalid JSON at byte {}: {shown}, expected {what}",
                self.offset
            ),
        };
        self.error = Some(error.clone());
        error
    }

    /// Reads one byte. After an error every further byte fails with the same error.
    pub fn feed(&mut self, b: u8) -> Result<Fed, JsonError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let result = self.step(b);
        self.offset += 1;
        result
    }

    /// Inside a string, reads the ordinary bytes at the front of `bytes` (neither a quote, a
    /// backslash nor a control character) in one go: they raise no event. Returns how many it
    /// read; the caller feeds the next byte with [`feed`](Self::feed). Most of a call's text is
    /// string contents, and a byte at a time through the state machine is the slow way.
    pub fn feed_plain(&mut self, bytes: &[u8]) -> usize {
        let State::Str {
            key,
            escape: Escape::None,
        } = self.state
        else {
            return 0;
        };
        if self.error.is_some() {
            return 0;
        }
        let n = bytes
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            .unwrap_or(bytes.len());
        if key {
            self.key.extend_from_slice(&bytes[..n]);
        }
        self.offset += n;
        n
    }

    /// Reads every byte of `text`, calling `on_event` with each byte's offset and events.
    pub fn feed_str(
        &mut self,
        text: &str,
        mut on_event: impl FnMut(usize, JsonEvent),
    ) -> Result<(), JsonError> {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            i += self.feed_plain(&bytes[i..]);
            let Some(&b) = bytes.get(i) else { break };
            for event in self.feed(b)?.iter() {
                on_event(i, event);
            }
            i += 1;
        }
        Ok(())
    }

    /// Whether the number just read fits a 64-bit float: serde_json refuses `1e999`.
    fn number_in_range(&self) -> bool {
        std::str::from_utf8(&self.number)
            .ok()
            .and_then(|text| text.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    }

    fn begin_value(&mut self, b: u8, fed: &mut Fed) -> Result<(), JsonError> {
        let depth = self.stack.len();
        if matches!(b, b'{' | b'[') && depth >= MAX_DEPTH {
            return Err(self.fail(b, "no more than 127 nested containers"));
        }
        if matches!(b, b'-' | b'0'..=b'9') {
            self.number.clear();
            self.number.push(b);
        }
        let kind = match b {
            b'{' => {
                self.stack.push(Container::Object);
                self.state = State::KeyOrClose;
                ValueKind::Object
            }
            b'[' => {
                self.stack.push(Container::Array);
                self.state = State::ValueOrClose;
                ValueKind::Array
            }
            b'"' => {
                self.state = State::Str {
                    key: false,
                    escape: Escape::None,
                };
                ValueKind::String
            }
            b'-' => {
                self.state = State::Num(Num::Minus);
                ValueKind::Number
            }
            b'0' => {
                self.state = State::Num(Num::Zero);
                ValueKind::Number
            }
            b'1'..=b'9' => {
                self.state = State::Num(Num::Int);
                ValueKind::Number
            }
            b't' => {
                self.state = State::Literal {
                    word: b"true",
                    pos: 1,
                };
                ValueKind::Literal
            }
            b'f' => {
                self.state = State::Literal {
                    word: b"false",
                    pos: 1,
                };
                ValueKind::Literal
            }
            b'n' => {
                self.state = State::Literal {
                    word: b"null",
                    pos: 1,
                };
                ValueKind::Literal
            }
            _ => return Err(self.fail(b, "a JSON value")),
        };
        fed.push(JsonEvent::ValueStart { depth, kind });
        Ok(())
    }

    /// A scalar value or container just finished: move to what may follow it.
    fn after_value(&mut self) {
        self.state = if self.stack.is_empty() {
            State::Done
        } else {
            State::CommaOrClose
        };
    }

    fn close(&mut self, b: u8, fed: &mut Fed) -> Result<(), JsonError> {
        let expected = match self.stack.last() {
            Some(Container::Object) => b'}',
            Some(Container::Array) => b']',
            None => return Err(self.fail(b, "end of input")),
        };
        if b != expected {
            let what = if expected == b'}' {
                "',' or '}'"
            } else {
                "',' or ']'"
            };
            return Err(self.fail(b, what));
        }
        self.stack.pop();
        fed.push(JsonEvent::ValueEnd {
            depth: self.stack.len(),
            inclusive: true,
        });
        self.after_value();
        Ok(())
    }

    fn step(&mut self, b: u8) -> Result<Fed, JsonError> {
        let mut fed = Fed::default();
        match self.state {
            State::Value => {
                if !is_ws(b) {
                    self.begin_value(b, &mut fed)?;
                }
            }
            State::ValueOrClose => {
                if b == b']' {
                    self.close(b, &mut fed)?;
                } else if !is_ws(b) {
                    self.begin_value(b, &mut fed)?;
                }
            }
            State::KeyOrClose | State::Key => {
                if b == b'"' {
                    self.key.clear();
                    self.state = State::Str {
                        key: true,
                        escape: Escape::None,
                    };
                } else if b == b'}' && self.state == State::KeyOrClose {
                    self.close(b, &mut fed)?;
                } else if !is_ws(b) {
                    return Err(self.fail(b, "an object key in double quotes"));
                }
            }
            State::Colon => {
                if b == b':' {
                    self.state = State::Value;
                } else if !is_ws(b) {
                    return Err(self.fail(b, "':'"));
                }
            }
            State::CommaOrClose => {
                if b == b',' {
                    self.state = match self.stack.last() {
                        Some(Container::Object) => State::Key,
                        _ => State::Value,
                    };
                } else if b == b'}' || b == b']' {
                    self.close(b, &mut fed)?;
                } else if !is_ws(b) {
                    let what = match self.stack.last() {
                        Some(Container::Object) => "',' or '}'",
                        _ => "',' or ']'",
                    };
                    return Err(self.fail(b, what));
                }
            }
            State::Str { key, escape } => {
                if key {
                    self.key.push(b);
                }
                match escape {
                    Escape::None => match b {
                        b'"' => {
                            if key {
                                self.key.pop();
                                self.state = State::Colon;
                                fed.push(JsonEvent::KeyEnd {
                                    depth: self.stack.len(),
                                });
                            } else {
                                fed.push(JsonEvent::ValueEnd {
                                    depth: self.stack.len(),
                                    inclusive: true,
                                });
                                self.after_value();
                            }
                        }
                        b'\\' => {
                            self.state = State::Str {
                                key,
                                escape: Escape::Backslash,
                            }
                        }
                        0x00..=0x1f => {
                            return Err(self.fail(b, "no control character inside a string"));
                        }
                        _ => {}
                    },
                    Escape::Backslash => {
                        let escape = match b {
                            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Escape::None,
                            b'u' => Escape::Unicode {
                                left: 4,
                                unit: 0,
                                low: false,
                            },
                            _ => return Err(self.fail(b, "a valid escape after '\\'")),
                        };
                        self.state = State::Str { key, escape };
                    }
                    Escape::Unicode { left, unit, low } => {
                        let Some(digit) = (b as char).to_digit(16) else {
                            return Err(self.fail(b, "a hex digit in a \\u escape"));
                        };
                        let unit = unit << 4 | digit as u16;
                        let escape = match (left, low, unit) {
                            (2.., _, _) => Escape::Unicode {
                                left: left - 1,
                                unit,
                                low,
                            },
                            (_, true, 0xdc00..=0xdfff) => Escape::None,
                            (_, true, _) => {
                                return Err(self.fail(b, "a low surrogate after a high one"));
                            }
                            (_, false, 0xd800..=0xdbff) => Escape::HighSurrogate,
                            (_, false, 0xdc00..=0xdfff) => {
                                return Err(self.fail(b, "no low surrogate without a high one"));
                            }
                            _ => Escape::None,
                        };
                        self.state = State::Str { key, escape };
                    }
                    Escape::HighSurrogate | Escape::HighBackslash => {
                        let escape = match (escape, b) {
                            (Escape::HighSurrogate, b'\\') => Escape::HighBackslash,
                            (Escape::HighBackslash, b'u') => Escape::Unicode {
                                left: 4,
                                unit: 0,
                                low: true,
                            },
                            _ => {
                                return Err(self.fail(
                                    b,
                                    "the \\u escape of a low surrogate after a high one",
                                ));
                            }
                        };
                        self.state = State::Str { key, escape };
                    }
                }
            }
            State::Num(n) => {
                let next = match (n, b) {
                    (Num::Minus, b'0') => Some(Num::Zero),
                    (Num::Minus, b'1'..=b'9') => Some(Num::Int),
                    (Num::Int, b'0'..=b'9') => Some(Num::Int),
                    (Num::Zero | Num::Int, b'.') => Some(Num::Dot),
                    (Num::Dot | Num::Frac, b'0'..=b'9') => Some(Num::Frac),
                    (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Some(Num::Exp),
                    (Num::Exp, b'+' | b'-') => Some(Num::ExpSign),
                    (Num::Exp | Num::ExpSign | Num::ExpDigits, b'0'..=b'9') => Some(Num::ExpDigits),
                    _ => None,
                };
                match next {
                    Some(next) => {
                        self.number.push(b);
                        self.state = State::Num(next);
                    }
                    None if n.can_end() => {
                        if !self.number_in_range() {
                            return Err(self.fail(b, "a number within a 64-bit float's range"));
                        }
                        fed.push(JsonEvent::ValueEnd {
                            depth: self.stack.len(),
                            inclusive: false,
                        });
                        self.after_value();
                        // The delimiter belongs to what follows the number.
                        let rest = self.step(b)?;
                        for event in rest.iter() {
                            fed.push(event);
                        }
                    }
                    None => return Err(self.fail(b, "a digit")),
                }
            }
            State::Literal { word, pos } => {
                if word.get(pos as usize) != Some(&b) {
                    let expected = String::from_utf8_lossy(word).into_owned();
                    return Err(self.fail(b, &format!("the literal {expected}")));
                }
                if pos as usize + 1 == word.len() {
                    fed.push(JsonEvent::ValueEnd {
                        depth: self.stack.len(),
                        inclusive: true,
                    });
                    self.after_value();
                } else {
                    self.state = State::Literal { word, pos: pos + 1 };
                }
            }
            State::Done => {
                if !is_ws(b) {
                    return Err(self.fail(b, "end of the JSON value"));
                }
            }
        }
        Ok(fed)
    }
}

/// Decodes the raw text of a JSON string token (with its quotes), e.g. a key or a name.
pub fn decode_string(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    serde_json::from_str::<String>(text).ok()
}

/// Why a value cannot be a call's arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgumentsError {
    /// The text is not JSON at all.
    Malformed(String),
    /// Valid JSON, but not an object nor a string holding one.
    NotAnObject(String),
}

/// Normalises a call's arguments value to the text of a JSON object, following the parsing
/// rules: an object stays as written; a JSON string holding an object is decoded once; `null`
/// or an empty text means no arguments (`{}`).
pub fn arguments_text(raw: &str) -> Result<String, ArgumentsError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok("{}".to_string());
    }
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| ArgumentsError::Malformed(e.to_string()))?;
    match value {
        serde_json::Value::Object(_) => Ok(raw.to_string()),
        serde_json::Value::Null => Ok("{}".to_string()),
        serde_json::Value::String(inner) => {
            let inner_trimmed = inner.trim();
            if inner_trimmed.is_empty() {
                return Ok("{}".to_string());
            }
            match serde_json::from_str::<serde_json::Value>(inner_trimmed) {
                Ok(serde_json::Value::Object(_)) => Ok(inner_trimmed.to_string()),
                _ => Err(ArgumentsError::NotAnObject(
                    "the arguments are a string that does not hold a JSON object".to_string(),
                )),
            }
        }
        other => Err(ArgumentsError::NotAnObject(format!(
            "the arguments are a JSON {}, not an object",
            json_type_name(&other)
        ))),
    }
}

/// The JSON type of a value, in words.
pub fn json_type_name(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> (Result<(), JsonError>, Vec<(usize, JsonEvent)>, bool) {
        let mut s = JsonScanner::new();
        let mut events = Vec::new();
        let r = s.feed_str(text, |i, e| events.push((i, e)));
        if r.is_ok()
            && let Some(e) = s.end_of_input()
        {
            events.push((text.len(), e));
        }
        (r, events, s.is_done())
    }

    #[test]
    fn plain_runs_read_in_one_go_change_nothing() {
        let texts = [
            r#"{"a": [1, -2.5e+3, true, null, "x\"}\\u1234 y"], "k\"ey": "v"}"#,
            r#"{"u": "\ud83d\ude00 é 😀", "code": "fn f() { return \"}\"; }"}"#,
            "{\"bad\": \"tab\there\"}",
            r#"{"a": "\q"}"#,
            r#""open string"#,
        ];
        for text in texts {
            let mut bytewise = JsonScanner::new();
            let mut expected = Vec::new();
            let mut expected_error = None;
            for (i, b) in text.bytes().enumerate() {
                match bytewise.feed(b) {
                    Ok(fed) => expected.extend(fed.iter().map(|e| (i, e))),
                    Err(e) => {
                        expected_error = Some(e);
                        break;
                    }
                }
            }
            let mut bulk = JsonScanner::new();
            let mut events = Vec::new();
            let error = bulk.feed_str(text, |i, e| events.push((i, e))).err();
            assert_eq!(events, expected, "{text}");
            assert_eq!(error, expected_error, "{text}");
            assert_eq!(bulk.key(), bytewise.key(), "{text}");
        }
    }

    #[test]
    fn accepts_what_serde_accepts() {
        let good = [
            r#"{}"#,
            r#"[]"#,
            r#"{"a": [1, -2.5e+3, 0, 0.1, true, false, null, "x\"}\\u1234"]}"#,
            r#"  {"nested": {"deep": [[{}]]}, "s": "{[\"]}"}  "#,
            r#""plain""#,
            r#"-0"#,
            r#"12"#,
            r#"{"u": "\ud83d\ude00 é 😀"}"#,
        ];
        for text in good {
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_ok(),
                "{text}"
            );
            let (r, _, done) = scan(text);
            assert!(r.is_ok(), "{text}: {r:?}");
            assert!(done, "{text} not done");
        }
    }

    #[test]
    fn rejects_what_serde_rejects_at_the_first_bad_byte() {
        let bad = [
            (r#"{"a": 1,}"#, 8),
            (r#"{'a': 1}"#, 1),
            (r#"{"a" 1}"#, 5),
            (r#"[01]"#, 2),
            (r#"{"a": tru}"#, 9),
            (r#"{"a": "\x"}"#, 8),
            (r#"{"a": "\u12g4"}"#, 11),
            (r#"{"a": 1}}"#, 8),
            (r#"[1.]"#, 3),
            (r#"{"a": -}"#, 7),
            (r#"[1e999]"#, 6),
            (r#"{"a": -1.5e400, "b": 1}"#, 14),
            // Surrogates without their other half.
            (r#"["\ud83d"]"#, 8),
            (r#"["\ud83dx"]"#, 8),
            (r#"["\ud83d\u00e9"]"#, 13),
            (r#"["\ude00"]"#, 7),
        ];
        for (text, at) in bad {
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_err(),
                "{text}"
            );
            let mut s = JsonScanner::new();
            let pos = text.bytes().position(|b| s.feed(b).is_err());
            assert_eq!(pos, Some(at), "{text}");
        }
    }

    #[test]
    fn nesting_is_limited_where_serde_json_limits_it() {
        for depth in 120..135 {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let mut s = JsonScanner::new();
            let ours = s.feed_str(&text, |_, _| {}).is_ok();
            let serde = serde_json::from_str::<serde_json::Value>(&text).is_ok();
            assert_eq!(ours, serde, "depth {depth}");
        }
    }

    #[test]
    fn reports_value_spans_and_keys() {
        let text = r#"{"name": "f", "arguments": {"x": [1, "}"]}, "n": 12}"#;
        let mut s = JsonScanner::new();
        let mut keys = Vec::new();
        let mut spans = Vec::new();
        let mut start = 0;
        s.feed_str(text, |i, e| match e {
            JsonEvent::KeyEnd { depth: 1 } => keys.push(i),
            JsonEvent::ValueStart { depth: 1, .. } => start = i,
            JsonEvent::ValueEnd {
                depth: 1,
                inclusive,
            } => spans.push(&text[start..if inclusive { i + 1 } else { i }]),
            _ => {}
        })
        .unwrap();
        assert_eq!(spans, vec![r#""f""#, r#"{"x": [1, "}"]}"#, "12"]);
        assert_eq!(keys.len(), 3);
        assert!(s.is_done());
    }

    #[test]
    fn number_then_close_gives_two_events() {
        let (_, events, done) = scan("[1]");
        assert!(done);
        let ends: Vec<_> = events
            .iter()
            .filter(|(_, e)| matches!(e, JsonEvent::ValueEnd { .. }))
            .collect();
        assert_eq!(ends.len(), 2);
    }

    #[test]
    fn arguments_are_normalised() {
        assert_eq!(arguments_text(r#" {"a": 1} "#).unwrap(), r#"{"a": 1}"#);
        assert_eq!(arguments_text(r#""{\"a\": 1}""#).unwrap(), r#"{"a": 1}"#);
        assert_eq!(arguments_text("").unwrap(), "{}");
        assert_eq!(arguments_text("null").unwrap(), "{}");
        assert!(matches!(
            arguments_text("[1]"),
            Err(ArgumentsError::NotAnObject(_))
        ));
        assert!(matches!(
            arguments_text(r#""nope""#),
            Err(ArgumentsError::NotAnObject(_))
        ));
        assert!(matches!(
            arguments_text("{nope"),
            Err(ArgumentsError::Malformed(_))
        ));
    }
}
