//! The keyword arguments between a call's parentheses, read as they arrive.
//!
//! A light scanner ([`Boundary`]) follows strings, comments and nested brackets to find where
//! each argument ends (a `,` or the closing `)` at the call's own depth); only then is the
//! argument parsed, once ([`crate::pylit`]). So a long argument costs the same per chunk as a
//! short one, and an argument that cannot be read is skipped to the call's `)` without losing
//! track of the list.

use plugboard_sdk::types::ProblemKind;

use crate::pylit::{LitError, identifier, skip_space, value};

/// Where the current argument ends, found incrementally.
#[derive(Clone, Debug, Default)]
struct Boundary {
    pos: usize,
    depth: usize,
    /// Inside a string: its quote and whether it is triple-quoted.
    quote: Option<(u8, bool)>,
    escaped: bool,
    comment: bool,
}

impl Boundary {
    /// The next `,`, `)` (or stray `]`/`}`) at depth 0 in `text`, from where the last call
    /// stopped; `None` when the text ends first.
    fn advance(&mut self, text: &str) -> Option<usize> {
        let bytes = text.as_bytes();
        while let Some(&b) = bytes.get(self.pos) {
            if self.comment {
                self.comment = b != b'\n';
            } else if let Some((quote, triple)) = self.quote {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == quote && !triple {
                    self.quote = None;
                } else if b == quote {
                    match bytes.get(self.pos..self.pos + 3) {
                        None => return None,
                        Some(three) if three == [quote; 3] => {
                            self.quote = None;
                            self.pos += 3;
                            continue;
                        }
                        Some(_) => {}
                    }
                } else if b == b'\n' && !triple {
                    // A one-line string cannot go on: let the parser report it.
                    self.quote = None;
                }
            } else {
                match b {
                    b'"' | b'\'' => {
                        let rest = &bytes[self.pos..];
                        if rest.len() < 3 && rest.iter().all(|&c| c == b) {
                            // `''` may be an empty string or the start of `'''`.
                            return None;
                        }
                        let triple = rest.starts_with(&[b; 3]);
                        self.quote = Some((b, triple));
                        self.pos += if triple { 3 } else { 1 };
                        continue;
                    }
                    b'#' => self.comment = true,
                    b'(' | b'[' | b'{' => self.depth += 1,
                    b')' | b']' | b'}' if self.depth == 0 => return Some(self.pos),
                    b')' | b']' | b'}' => self.depth -= 1,
                    b',' if self.depth == 0 => return Some(self.pos),
                    _ => {}
                }
            }
            self.pos += 1;
        }
        None
    }
}

/// What [`CallArgs::step`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgStep {
    /// A complete keyword argument: its name and value as JSON text.
    Argument { name: String, json: String },
    /// The call's `)`: its arguments end before byte `end - 1`.
    Close { end: usize },
    /// The arguments cannot be read; the rest of the call is skipped.
    Failed(ProblemKind, String),
    /// More text is needed.
    More,
}

/// The arguments of one call; offsets are into the text after its `(`.
#[derive(Clone, Debug, Default)]
pub struct CallArgs {
    /// Where the next argument starts.
    next: usize,
    scan: Boundary,
    names: Vec<String>,
    failed: bool,
}

impl CallArgs {
    /// Arguments were read.
    pub fn any(&self) -> bool {
        !self.names.is_empty()
    }

    /// Arguments were read before the last one.
    pub fn any_before_last(&self) -> bool {
        self.names.len() > 1
    }

    /// The call failed; it is being skipped.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// The next step over `text`, the call's text after `(` (it only ever grows).
    pub fn step(&mut self, text: &str) -> ArgStep {
        loop {
            let Some(at) = self.scan.advance(text) else {
                return ArgStep::More;
            };
            let delimiter = text.as_bytes()[at];
            self.scan.pos = at + 1;
            if self.failed {
                if delimiter == b')' {
                    return ArgStep::Close { end: at + 1 };
                }
                continue;
            }
            let piece = &text[self.next..=at];
            self.next = at + 1;
            let step = match argument(piece) {
                Ok(None) if delimiter == b')' => return ArgStep::Close { end: at + 1 },
                Ok(None) => Err((
                    ProblemKind::MalformedJson,
                    "an empty argument (two commas)".to_string(),
                )),
                Ok(Some(_)) if !matches!(delimiter, b',' | b')') => Err((
                    ProblemKind::MalformedJson,
                    format!("an unmatched '{}'", delimiter as char),
                )),
                Ok(Some((name, _))) if self.names.contains(&name) => Err((
                    ProblemKind::MalformedJson,
                    format!("the keyword argument {name} is repeated"),
                )),
                Ok(Some((name, json))) => {
                    self.names.push(name.clone());
                    Ok(ArgStep::Argument { name, json })
                }
                Err(e) => Err(e),
            };
            match step {
                Ok(argument) => {
                    // The `)` after it comes as the next step.
                    if delimiter == b')' {
                        self.scan.pos = at;
                        self.next = at;
                    }
                    return argument;
                }
                Err((kind, message)) => {
                    self.failed = true;
                    if delimiter == b')' {
                        self.scan.pos = at;
                    }
                    return ArgStep::Failed(kind, message);
                }
            }
        }
    }
}

/// A keyword argument's name and JSON value, or why it cannot be read.
type Argument = Result<Option<(String, String)>, (ProblemKind, String)>;

/// One argument, `piece` ending with its delimiter: `None` when it is empty.
fn argument(piece: &str) -> Argument {
    let last = piece.len() - 1;
    let pos = skip_space(piece, 0);
    if pos >= last {
        return Ok(None);
    }
    let keyword = identifier(piece, pos).and_then(|(name, end)| {
        let eq = skip_space(piece, end);
        let bytes = piece.as_bytes();
        (bytes.get(eq) == Some(&b'=') && bytes.get(eq + 1) != Some(&b'=')).then_some((name, eq + 1))
    });
    let Some((name, value_at)) = keyword else {
        return Err((
            ProblemKind::InvalidArguments,
            "a positional argument: pythonic calls name every argument".into(),
        ));
    };
    match value(piece, value_at) {
        Ok((json, end)) if skip_space(piece, end) == last => Ok(Some((name.to_string(), json))),
        Ok(_) => Err((
            ProblemKind::MalformedJson,
            format!("argument {name}: expected ',' or ')' after its value"),
        )),
        Err(LitError::Incomplete) => Err((
            ProblemKind::MalformedJson,
            format!("argument {name}: the value does not end"),
        )),
        Err(LitError::Syntax(m)) => {
            Err((ProblemKind::MalformedJson, format!("argument {name}: {m}")))
        }
        Err(LitError::NotLiteral(m)) => Err((
            ProblemKind::InvalidArguments,
            format!("argument {name}: {m}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(text: &str) -> Vec<ArgStep> {
        let mut args = CallArgs::default();
        let mut out = Vec::new();
        // Every prefix first, as a stream would give it.
        for end in 1..=text.len() {
            if !text.is_char_boundary(end) {
                continue;
            }
            loop {
                match args.step(&text[..end]) {
                    ArgStep::More => break,
                    step @ ArgStep::Close { .. } => {
                        out.push(step);
                        return out;
                    }
                    step => out.push(step),
                }
            }
        }
        out
    }

    #[test]
    fn arguments_come_one_by_one() {
        let text = "a='x, )', b=[1, (2)], c={'k': \"\"\"q'''\"\"\"},)rest";
        let got = steps(text);
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(
            got[0],
            ArgStep::Argument {
                name: "a".into(),
                json: "\"x, )\"".into()
            }
        );
        assert_eq!(
            got[3],
            ArgStep::Close {
                end: text.len() - 4
            }
        );
        assert_eq!(steps(")"), vec![ArgStep::Close { end: 1 }]);
    }

    #[test]
    fn a_bad_argument_skips_to_the_parenthesis() {
        let got = steps("a=1, 'p', b=(1, 2), c=x) tail");
        assert!(matches!(
            got[1],
            ArgStep::Failed(ProblemKind::InvalidArguments, _)
        ));
        assert_eq!(got.last(), Some(&ArgStep::Close { end: 24 }));
        let got = steps("a=1 2)");
        assert!(matches!(
            got[0],
            ArgStep::Failed(ProblemKind::MalformedJson, _)
        ));
        assert_eq!(got.last(), Some(&ArgStep::Close { end: 6 }));
    }
}
