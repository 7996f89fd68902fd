//! Calls of Llama 3.1's built-in tools: `<|python_tag|>brave_search.call(query="…")`, the form
//! its template writes them in (template variable `builtin_tools`). The arguments are Python
//! keyword arguments whose values are strings, numbers, `True`, `False` or `None`; they become
//! a JSON object. (Code for the built-in code interpreter is not a call: it is content.)

/// What the text after `<|python_tag|>` starts with.
#[derive(Debug, PartialEq, Eq)]
pub enum Opening<'a> {
    /// `NAME.call(`: a built-in call; its arguments start after `len` bytes.
    Call { name: &'a str, len: usize },
    /// Too little text to tell.
    Undecided,
    /// Something else.
    No,
}

const CALL: &str = ".call(";

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

pub fn opening(text: &str) -> Opening<'_> {
    let name_len = text.find(|c: char| !is_name_char(c)).unwrap_or(text.len());
    let name = &text[..name_len];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return if text.is_empty() {
            Opening::Undecided
        } else {
            Opening::No
        };
    }
    let rest = &text[name_len..];
    if rest.starts_with(CALL) {
        Opening::Call {
            name,
            len: name_len + CALL.len(),
        }
    } else if CALL.starts_with(rest) {
        Opening::Undecided
    } else {
        Opening::No
    }
}

/// The byte after the `)` that ends the arguments in `text`, outside strings.
pub fn arguments_end(text: &str) -> Option<usize> {
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == ')' => return Some(i + 1),
            None => {}
        }
    }
    None
}

/// A string literal at the start of `text` (quote included): its text and length.
fn string(text: &str) -> Result<(String, usize), String> {
    let mut chars = text.char_indices();
    let Some((_, quote)) = chars.next() else {
        return Err("expected a string".into());
    };
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((out, i + 1)),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, other)) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("a string does not end".into())
}

/// The keyword arguments between `(` and `)` (exclusive) as the text of a JSON object.
pub fn arguments_json(text: &str) -> Result<String, String> {
    let mut object = serde_json::Map::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let name_len = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
        let name = &rest[..name_len];
        let Some(after) = rest[name_len..].trim_start().strip_prefix('=') else {
            return Err(format!("expected NAME=value, found {rest:?}"));
        };
        if name.is_empty() {
            return Err("an argument has no name".into());
        }
        let after = after.trim_start();
        let (value, used) = if after.starts_with(['"', '\'']) {
            let (s, used) = string(after)?;
            (serde_json::Value::String(s), used)
        } else {
            let used = after.find([',', ' ', '\n']).unwrap_or(after.len());
            let word = &after[..used];
            let value = match word {
                "True" => serde_json::Value::Bool(true),
                "False" => serde_json::Value::Bool(false),
                "None" => serde_json::Value::Null,
                number => match serde_json::from_str::<serde_json::Number>(number) {
                    Ok(n) => serde_json::Value::Number(n),
                    Err(_) => return Err(format!("the value {word:?} is not a literal")),
                },
            };
            (value, used)
        };
        object.insert(name.to_string(), value);
        rest = after[used..].trim_start();
        match rest.strip_prefix(',') {
            Some(next) => rest = next.trim_start(),
            None if rest.is_empty() => {}
            None => return Err(format!("expected ',' between arguments, found {rest:?}")),
        }
    }
    Ok(serde_json::Value::Object(object).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_calls_are_read() {
        assert_eq!(
            opening("brave_search.call(query=\"x\")"),
            Opening::Call {
                name: "brave_search",
                len: 18
            }
        );
        assert_eq!(opening("brave_sea"), Opening::Undecided);
        assert_eq!(opening("wolfram.ca"), Opening::Undecided);
        assert_eq!(opening("import math"), Opening::No);
        assert_eq!(opening("{"), Opening::No);
        let text = "query=\"a \\\"b\\\" ) c\", n=3, ok=True)<|eom_id|>";
        let end = arguments_end(text).unwrap();
        assert_eq!(&text[end..], "<|eom_id|>");
        assert_eq!(
            arguments_json(&text[..end - 1]).unwrap(),
            r#"{"query":"a \"b\" ) c","n":3,"ok":true}"#
        );
        assert_eq!(arguments_json(" ").unwrap(), "{}");
        assert!(arguments_json("query=x").is_err());
        assert!(arguments_json("\"x\"").is_err());
    }
}
