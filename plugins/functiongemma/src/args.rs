//! FunctionGemma's argument syntax, read into JSON while it streams.
//!
//! `{city:<escape>Paris<escape>,days:3,metric:true,tags:[<escape>a<escape>],at:{lat:1.5}}`:
//! keys are bare, strings sit between `<escape>` tokens (so they may hold any character), and
//! numbers, booleans and null are bare. The JSON text is sent as soon as each piece is certain:
//! a key once its `:` is read, a string's text as it arrives, a bare value once it ends.
//!
//! Leniency where it costs nothing: a bare word that is neither a number nor a literal is a
//! string (unless it holds a `:`, which shows a missing comma), Python's `True`/`False`/`None` are literals, a key may itself be escaped, and a
//! trailing comma is ignored.

const ESCAPE: &str = "<escape>";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the opening `{`.
    Start,
    /// Inside an object, where a key (or, without a pending comma, `}`) comes.
    Key,
    /// Where a value comes; in an array also `]` (after `[` or a trailing comma).
    Value,
    /// Inside an escaped string.
    Str,
    /// Inside a bare value.
    Bare,
    /// After a value: `,` or the closing bracket.
    After,
    Done,
}

/// What [`ArgsReader::push`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// All text was read; the arguments go on.
    More,
    /// The arguments object closed; `rest` is the text after it.
    Done { rest: String },
    /// The text is not the syntax; `rest` is the text from where it broke.
    Failed { message: String, rest: String },
}

/// Reads one arguments object, writing JSON through `emit`.
#[derive(Debug)]
pub struct ArgsReader {
    state: State,
    stack: Vec<Container>,
    buf: String,
    /// The bare value read so far.
    token: String,
    /// A `,` was read and is written before the next item.
    comma: bool,
}

impl Default for ArgsReader {
    fn default() -> Self {
        ArgsReader {
            state: State::Start,
            stack: Vec::new(),
            buf: String::new(),
            token: String::new(),
            comma: false,
        }
    }
}

/// Text as the inside of a JSON string.
fn json_text(text: &str) -> String {
    let quoted = serde_json::Value::String(text.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// The length of the longest end of `text` that starts `marker` (a marker perhaps cut off).
fn partial_suffix(text: &str, marker: &str) -> usize {
    (1..marker.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && marker.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

/// A bare value as JSON: numbers and literals as they are, any other word as a string.
fn bare_json(token: &str) -> String {
    match token {
        "true" | "True" => "true".into(),
        "false" | "False" => "false".into(),
        "null" | "None" => "null".into(),
        _ if matches!(
            serde_json::from_str::<serde_json::Value>(token),
            Ok(serde_json::Value::Number(_))
        ) =>
        {
            token.into()
        }
        _ => format!("\"{}\"", json_text(token)),
    }
}

/// Characters that cannot be part of a bare key.
fn breaks_key(c: char) -> bool {
    matches!(c, '{' | '}' | '[' | ']' | ',' | '<' | '>' | '"')
}

impl ArgsReader {
    fn fail(&mut self, message: impl Into<String>) -> Step {
        self.state = State::Done;
        Step::Failed {
            message: message.into(),
            rest: std::mem::take(&mut self.buf),
        }
    }

    /// Writes a pending comma before the next item.
    fn item(&mut self, emit: &mut impl FnMut(&str)) {
        if self.comma {
            emit(",");
            self.comma = false;
        }
    }

    fn open(&mut self, container: Container, emit: &mut impl FnMut(&str)) {
        self.stack.push(container);
        match container {
            Container::Object => {
                emit("{");
                self.state = State::Key;
            }
            Container::Array => {
                emit("[");
                self.state = State::Value;
            }
        }
    }

    /// Takes the next piece of text. `at_end`: no more will come.
    pub fn push(&mut self, text: &str, at_end: bool, emit: &mut impl FnMut(&str)) -> Step {
        self.buf.push_str(text);
        loop {
            if !matches!(self.state, State::Str | State::Bare) {
                let trimmed = self.buf.trim_start().len();
                self.buf.drain(..self.buf.len() - trimmed);
            }
            let Some(first) = self.buf.chars().next() else {
                return Step::More;
            };
            match self.state {
                State::Start => {
                    if first != '{' {
                        return self.fail(format!(
                            "expected '{{' to open the arguments, found {first:?}"
                        ));
                    }
                    self.buf.drain(..1);
                    self.open(Container::Object, emit);
                }
                State::Key => {
                    if first == '}' {
                        self.buf.drain(..1);
                        self.comma = false;
                        self.close(Container::Object, emit);
                        continue;
                    }
                    let (key, used) = if let Some(quoted) = self.buf.strip_prefix(ESCAPE) {
                        let Some(end) = quoted.find(ESCAPE) else {
                            return Step::More;
                        };
                        let after = quoted[end + ESCAPE.len()..].trim_start();
                        match after.chars().next() {
                            None => return Step::More,
                            Some(':') => {}
                            Some(c) => {
                                return self.fail(format!("expected ':' after a key, found {c:?}"));
                            }
                        }
                        let used = self.buf.len() - after.len() + 1;
                        (quoted[..end].to_string(), used)
                    } else if ESCAPE.starts_with(self.buf.as_str()) && !at_end {
                        return Step::More;
                    } else {
                        // The first character that cannot be in a key fails the key, whether
                        // the ':' after it has arrived yet or not: the same problem whatever
                        // the chunk boundaries.
                        let colon = self.buf.find(':');
                        let key = &self.buf[..colon.unwrap_or(self.buf.len())];
                        if let Some(c) = key.chars().find(|c| breaks_key(*c)) {
                            return self.fail(format!("expected a key, found {c:?}"));
                        }
                        let Some(colon) = colon else {
                            return Step::More;
                        };
                        let key = key.trim();
                        if key.is_empty() {
                            return self.fail("expected a key before ':'");
                        }
                        (key.to_string(), colon + 1)
                    };
                    self.buf.drain(..used);
                    self.item(emit);
                    emit(&format!("\"{}\":", json_text(&key)));
                    self.state = State::Value;
                }
                State::Value => {
                    if first == ']' && self.stack.last() == Some(&Container::Array) {
                        self.buf.drain(..1);
                        self.comma = false;
                        self.close(Container::Array, emit);
                        continue;
                    }
                    if let Some(rest) = self.buf.strip_prefix(ESCAPE) {
                        self.buf = rest.to_string();
                        self.item(emit);
                        emit("\"");
                        self.state = State::Str;
                    } else if ESCAPE.starts_with(self.buf.as_str()) && !at_end {
                        return Step::More;
                    } else if first == '{' || first == '[' {
                        self.buf.drain(..1);
                        self.item(emit);
                        let container = if first == '{' {
                            Container::Object
                        } else {
                            Container::Array
                        };
                        self.open(container, emit);
                    } else if matches!(first, ',' | '}' | ']' | '<') {
                        return self.fail(format!("expected a value, found {first:?}"));
                    } else {
                        self.token.clear();
                        self.state = State::Bare;
                    }
                }
                State::Str => match self.buf.find(ESCAPE) {
                    Some(end) => {
                        emit(&json_text(&self.buf[..end]));
                        emit("\"");
                        self.buf.drain(..end + ESCAPE.len());
                        self.state = State::After;
                    }
                    None => {
                        let keep = if at_end {
                            0
                        } else {
                            partial_suffix(&self.buf, ESCAPE)
                        };
                        let send = self.buf.len() - keep;
                        emit(&json_text(&self.buf[..send]));
                        self.buf.drain(..send);
                        return Step::More;
                    }
                },
                State::Bare => {
                    let end = self.buf.find([',', '}', ']', '<', '\n']);
                    let piece_end = end.unwrap_or(self.buf.len());
                    self.token.push_str(&self.buf[..piece_end]);
                    self.buf.drain(..piece_end);
                    if end.is_none() {
                        return Step::More;
                    }
                    let token = self.token.trim().to_string();
                    if token.is_empty() {
                        return self.fail("a value is missing");
                    }
                    // `a:1 b:2`: a comma is missing, this is not one bare word.
                    if token.contains(':') {
                        return self.fail(format!("expected ',' between items, found {token:?}"));
                    }
                    self.item(emit);
                    emit(&bare_json(&token));
                    self.state = State::After;
                }
                State::After => {
                    // `first` may be any character here, not only ASCII punctuation.
                    self.buf.drain(..first.len_utf8());
                    match (first, self.stack.last()) {
                        (',', Some(Container::Object)) => {
                            self.comma = true;
                            self.state = State::Key;
                        }
                        (',', Some(Container::Array)) => {
                            self.comma = true;
                            self.state = State::Value;
                        }
                        ('}', Some(Container::Object)) => self.close(Container::Object, emit),
                        (']', Some(Container::Array)) => self.close(Container::Array, emit),
                        (c, _) => {
                            self.buf.insert(0, c);
                            return self
                                .fail(format!("expected ',' or a closing bracket, found {c:?}"));
                        }
                    }
                }
                State::Done => {
                    return Step::Done {
                        rest: std::mem::take(&mut self.buf),
                    };
                }
            }
            if self.state == State::Done {
                return Step::Done {
                    rest: std::mem::take(&mut self.buf),
                };
            }
        }
    }

    fn close(&mut self, container: Container, emit: &mut impl FnMut(&str)) {
        self.stack.pop();
        emit(if container == Container::Object {
            "}"
        } else {
            "]"
        });
        self.state = if self.stack.is_empty() {
            State::Done
        } else {
            State::After
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (String, Step) {
        let mut json = String::new();
        let mut reader = ArgsReader::default();
        let step = reader.push(text, true, &mut |s| json.push_str(s));
        (json, step)
    }

    #[test]
    fn reads_every_kind_of_value() {
        let (json, step) = read(
            "{s:<escape>a, {b}: \"c\" <end><escape>,n:-1.5e3,t:true,f:False,z:null,w:plain words,l:[1,<escape>x<escape>,[]],o:{k:{}},}rest",
        );
        assert_eq!(
            step,
            Step::Done {
                rest: "rest".into()
            }
        );
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"s": "a, {b}: \"c\" <end>", "n": -1.5e3, "t": true, "f": false, "z": null, "w": "plain words", "l": [1, "x", []], "o": {"k": {}}})
        );
    }

    #[test]
    fn chunks_do_not_change_the_json() {
        let text = "{city:<escape>Zürich 東京<escape>,days:12,tags:[<escape>a<escape>,true]}";
        let (whole, _) = read(text);
        for size in 1..8 {
            let mut json = String::new();
            let mut reader = ArgsReader::default();
            let chars: Vec<char> = text.chars().collect();
            let mut last = Step::More;
            for chunk in chars.chunks(size) {
                let chunk: String = chunk.iter().collect();
                last = reader.push(&chunk, false, &mut |s| json.push_str(s));
            }
            assert_eq!(
                last,
                Step::Done {
                    rest: String::new()
                },
                "{size}"
            );
            assert_eq!(json, whole, "{size}");
        }
    }

    #[test]
    fn broken_syntax_fails() {
        assert!(matches!(read("{a:1 b:2}").1, Step::Failed { .. }));
        assert!(matches!(read("{a:}").1, Step::Failed { .. }));
        assert!(matches!(read("(a:1)").1, Step::Failed { .. }));
        assert!(matches!(read("{a:[1}").1, Step::Failed { .. }));
        assert_eq!(read("{a:<escape>x").1, Step::More);
    }
}
