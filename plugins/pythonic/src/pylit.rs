//! Python literals as JSON text: what a pythonic call's arguments are written in.
//!
//! `ast.literal_eval` accepts strings (both quote styles, triple quotes, `r`/`u`/`b` prefixes,
//! every escape, adjacent strings joined), numbers (`1_000`, `0x1F`, `.5`, `1e-3`), `True`,
//! `False`, `None` (and JSON's `true`, `false`, `null`, which models write too), lists, tuples,
//! sets and dicts, nested. Each becomes the JSON value a Python
//! program would get from `json.dumps(value)`: tuples and sets are arrays, dict keys that are
//! numbers, booleans or `None` become their JSON text. Numbers keep their digits (no float
//! rounding, no size limit).
//!
//! The text arrives in pieces, so every reader tells a value cut off by the end of the text
//! ([`LitError::Incomplete`]) from one that cannot be Python ([`LitError::Syntax`]) or is Python
//! but not a literal, such as a variable or an expression ([`LitError::NotLiteral`]).

/// Why no value could be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LitError {
    /// The text ends before the value does: more text may complete it.
    Incomplete,
    /// Not Python.
    Syntax(String),
    /// Python, but not a literal (a name, an expression, an f-string).
    NotLiteral(String),
}

/// A value's JSON text and the byte after it.
pub type Read<T> = Result<(T, usize), LitError>;

fn syntax<T>(message: impl Into<String>) -> Result<T, LitError> {
    Err(LitError::Syntax(message.into()))
}

fn not_literal<T>(message: impl Into<String>) -> Result<T, LitError> {
    Err(LitError::NotLiteral(message.into()))
}

/// Skips white space, comments and line continuations from `pos`.
pub fn skip_space(text: &str, mut pos: usize) -> usize {
    let bytes = text.as_bytes();
    while let Some(&b) = bytes.get(pos) {
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => pos += 1,
            b'\\' if bytes.get(pos + 1) == Some(&b'\n') => pos += 2,
            // A `\` that ends the text so far may be a continuation whose newline comes in
            // the next piece: it counts as space until then, or a stream and the whole
            // output would read differently.
            b'\\' if pos + 1 == bytes.len() => return bytes.len(),
            b'#' => {
                while bytes.get(pos).is_some_and(|&b| b != b'\n') {
                    pos += 1;
                }
            }
            _ => break,
        }
    }
    pos
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// A Python identifier at `pos`, and the byte after it. `None` when none starts there.
pub fn identifier(text: &str, pos: usize) -> Option<(&str, usize)> {
    let rest = text.get(pos..)?;
    let first = rest.chars().next()?;
    if !is_name_start(first) {
        return None;
    }
    let len = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
    Some((&rest[..len], pos + len))
}

/// Reads one literal at `pos` (white space before it is skipped).
pub fn value(text: &str, pos: usize) -> Read<String> {
    let pos = skip_space(text, pos);
    let Some(c) = text[pos..].chars().next() else {
        return Err(LitError::Incomplete);
    };
    match c {
        '[' => {
            let (items, end) = items(text, pos + 1, b']')?;
            Ok((array(&items), end))
        }
        '(' => {
            let (items, end, trailing_comma) = items_with_comma(text, pos + 1, b')')?;
            // `(x)` is x; `(x,)` and `()` are tuples.
            match items.as_slice() {
                [one] if !trailing_comma => Ok((one.clone(), end)),
                _ => Ok((array(&items), end)),
            }
        }
        '{' => dict_or_set(text, pos + 1),
        '"' | '\'' => strings(text, pos),
        '-' | '+' => {
            let (number, end) = match value(text, pos + 1) {
                Ok((v, end)) if v.starts_with(|c: char| c.is_ascii_digit()) => (v, end),
                Ok(_) => return not_literal("a sign before something that is not a number"),
                Err(e) => return Err(e),
            };
            let signed = if c == '-' && number != "0" {
                format!("-{number}")
            } else {
                number
            };
            Ok((signed, end))
        }
        '0'..='9' => number(text, pos),
        '.' if text[pos + 1..].starts_with(|c: char| c.is_ascii_digit()) => number(text, pos),
        '.' if pos + 1 == text.len() => Err(LitError::Incomplete),
        c if is_name_start(c) => word(text, pos),
        other => syntax(format!("'{other}' cannot start a value")),
    }
}

/// A name at `pos`: `True`, `False`, `None`, a string prefix, or a name that is no literal.
fn word(text: &str, pos: usize) -> Read<String> {
    let Some((name, end)) = identifier(text, pos) else {
        return syntax("expected a value");
    };
    let next = text[end..].chars().next();
    if let Some(quote @ ('"' | '\'')) = next {
        let prefix = name.to_ascii_lowercase();
        return match prefix.as_str() {
            "r" | "u" | "b" | "br" | "rb" => strings(text, pos),
            "f" | "fr" | "rf" => not_literal("an f-string is not a literal"),
            _ => syntax(format!("a name directly before {quote}")),
        };
    }
    if next.is_none() {
        // `Tru` may become `True`, `True` may become `Truest`.
        return Err(LitError::Incomplete);
    }
    match name {
        // JSON's spellings too: models trained on JSON calls write them inside pythonic ones,
        // and no Python literal is spelt so (in Python they would be unbound names).
        "True" | "true" => Ok(("true".into(), end)),
        "False" | "false" => Ok(("false".into(), end)),
        "None" | "null" => Ok(("null".into(), end)),
        other => not_literal(format!("'{other}' is a name, not a literal value")),
    }
}

fn array(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

fn items(text: &str, pos: usize, close: u8) -> Read<Vec<String>> {
    let (items, end, _) = items_with_comma(text, pos, close)?;
    Ok((items, end))
}

/// Comma-separated values up to `close`; also whether a comma came last.
fn items_with_comma(
    text: &str,
    mut pos: usize,
    close: u8,
) -> Result<(Vec<String>, usize, bool), LitError> {
    let mut items = Vec::new();
    let mut trailing_comma = false;
    loop {
        pos = skip_space(text, pos);
        match text.as_bytes().get(pos) {
            None => return Err(LitError::Incomplete),
            Some(&b) if b == close => return Ok((items, pos + 1, trailing_comma)),
            Some(_) => {}
        }
        let (item, end) = value(text, pos)?;
        items.push(item);
        pos = skip_space(text, end);
        match text.as_bytes().get(pos) {
            None => return Err(LitError::Incomplete),
            Some(b',') => {
                pos += 1;
                trailing_comma = true;
            }
            Some(&b) if b == close => return Ok((items, pos + 1, false)),
            Some(_) => return syntax(format!("expected ',' or '{}'", close as char)),
        }
    }
}

/// The JSON key a dict key's JSON text becomes, as `json.dumps` writes it.
fn key_of(json: &str) -> Result<String, LitError> {
    if json.starts_with('"') {
        return serde_json::from_str::<String>(json)
            .map_err(|e| LitError::Syntax(format!("bad dict key: {e}")));
    }
    if json.starts_with(['[', '{']) {
        return not_literal("a dict key that is a list, tuple or dict");
    }
    Ok(json.to_string())
}

fn dict_or_set(text: &str, pos: usize) -> Read<String> {
    let start = skip_space(text, pos);
    match text.as_bytes().get(start) {
        None => return Err(LitError::Incomplete),
        Some(b'}') => return Ok(("{}".into(), start + 1)),
        Some(_) => {}
    }
    let (first, end) = value(text, start)?;
    let after = skip_space(text, end);
    match text.as_bytes().get(after) {
        None => Err(LitError::Incomplete),
        Some(b':') => dict(text, first, after + 1),
        // A set: JSON has none, json.dumps would refuse it; an array keeps the values.
        Some(_) => {
            let (items, end) = items(text, start, b'}')?;
            Ok((array(&items), end))
        }
    }
}

/// The rest of a dict whose first key has been read.
fn dict(text: &str, first_key: String, mut pos: usize) -> Read<String> {
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut key = Some(first_key);
    loop {
        let key_json = match key.take() {
            Some(k) => k,
            None => {
                pos = skip_space(text, pos);
                match text.as_bytes().get(pos) {
                    None => return Err(LitError::Incomplete),
                    Some(b'}') => break,
                    Some(_) => {}
                }
                let (k, end) = value(text, pos)?;
                pos = skip_space(text, end);
                match text.as_bytes().get(pos) {
                    None => return Err(LitError::Incomplete),
                    Some(b':') => pos += 1,
                    Some(_) => return syntax("expected ':' after a dict key"),
                }
                k
            }
        };
        let (v, end) = value(text, pos)?;
        let name = key_of(&key_json)?;
        // Like a Python dict: a repeated key keeps its place and takes the last value.
        match entries.iter_mut().find(|(k, _)| *k == name) {
            Some(entry) => entry.1 = v,
            None => entries.push((name, v)),
        }
        pos = skip_space(text, end);
        match text.as_bytes().get(pos) {
            None => return Err(LitError::Incomplete),
            Some(b',') => pos += 1,
            Some(b'}') => break,
            Some(_) => return syntax("expected ',' or '}' in a dict"),
        }
    }
    let body: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}: {v}", json_string(k)))
        .collect();
    Ok((format!("{{{}}}", body.join(", ")), pos + 1))
}

/// A string as JSON text.
pub fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// One string literal or several adjacent ones (`"a" 'b'` is `"ab"`), from the prefix or quote
/// at `pos`.
fn strings(text: &str, pos: usize) -> Read<String> {
    let mut joined = String::new();
    let mut pos = pos;
    loop {
        let (part, end) = string(text, pos)?;
        joined.push_str(&part);
        let next = skip_space(text, end);
        let rest = &text[next..];
        let prefix_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let prefix = rest[..prefix_len].to_ascii_lowercase();
        let quoted = rest[prefix_len..].starts_with(['"', '\'']);
        if quoted && matches!(prefix.as_str(), "" | "r" | "u" | "b" | "br" | "rb") {
            pos = next;
        } else {
            return Ok((json_string(&joined), end));
        }
    }
}

/// One string literal (prefix included) at `pos`: its text and the byte after it.
fn string(text: &str, pos: usize) -> Read<String> {
    let rest = &text[pos..];
    let prefix_len = rest.find(['"', '\'']).unwrap_or(0);
    let raw = rest[..prefix_len].to_ascii_lowercase().contains('r');
    let body_start = pos + prefix_len;
    let bytes = text.as_bytes();
    let quote = bytes[body_start];
    let triple = [quote; 3];
    let after_quote = &bytes[body_start..];
    let is_triple = after_quote.starts_with(&triple);
    if !is_triple && after_quote.len() < 3 && triple.starts_with(after_quote) {
        // `''` at the end may be an empty string or the start of `'''`.
        return Err(LitError::Incomplete);
    }
    let open = if is_triple { 3 } else { 1 };
    let mut out = String::new();
    let mut i = body_start + open;
    loop {
        let Some(c) = text[i..].chars().next() else {
            return Err(LitError::Incomplete);
        };
        if c as u32 == quote as u32 {
            if !is_triple {
                return Ok((out, i + 1));
            }
            if bytes[i..].starts_with(&triple) {
                return Ok((out, i + 3));
            }
            if bytes.len() - i < 3 {
                return Err(LitError::Incomplete);
            }
            out.push(c);
            i += 1;
            continue;
        }
        match c {
            '\n' if !is_triple => return syntax("a line break inside a one-line string"),
            '\\' if raw => {
                // A raw string keeps the backslash; it still cannot end on an escaped quote.
                let Some(next) = text[i + 1..].chars().next() else {
                    return Err(LitError::Incomplete);
                };
                out.push('\\');
                out.push(next);
                i += 1 + next.len_utf8();
            }
            '\\' => {
                let (decoded, end) = escape(text, i + 1)?;
                out.push_str(&decoded);
                i = end;
            }
            c => {
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
}

/// `count` hex digits at `pos` as a number.
fn hex(text: &str, pos: usize, count: usize) -> Read<u32> {
    let digits = text.get(pos..).unwrap_or("");
    let available = digits
        .bytes()
        .take(count)
        .take_while(u8::is_ascii_hexdigit)
        .count();
    if available < count {
        return if available == digits.len() {
            Err(LitError::Incomplete)
        } else {
            syntax("a truncated \\x, \\u or \\U escape")
        };
    }
    u32::from_str_radix(&digits[..count], 16)
        .map(|n| (n, pos + count))
        .map_err(|e| LitError::Syntax(e.to_string()))
}

/// A code point as text; surrogates, which Rust strings cannot hold, become U+FFFD.
fn code_point(n: u32) -> Result<String, LitError> {
    match char::from_u32(n) {
        Some(c) => Ok(c.to_string()),
        None if (0xD800..0xE000).contains(&n) => Ok('\u{FFFD}'.to_string()),
        None => syntax(format!("\\U{n:08x} is not a code point")),
    }
}

/// The escape after a backslash at `pos - 1`: its text and the byte after it.
fn escape(text: &str, pos: usize) -> Read<String> {
    let Some(c) = text[pos..].chars().next() else {
        return Err(LitError::Incomplete);
    };
    let simple = |s: &str| Ok((s.to_string(), pos + 1));
    match c {
        '\n' => simple(""),
        '\\' => simple("\\"),
        '\'' => simple("'"),
        '"' => simple("\""),
        'a' => simple("\x07"),
        'b' => simple("\x08"),
        'f' => simple("\x0c"),
        'n' => simple("\n"),
        'r' => simple("\r"),
        't' => simple("\t"),
        'v' => simple("\x0b"),
        '0'..='7' => {
            let digits = text[pos..]
                .bytes()
                .take(3)
                .take_while(|b| (b'0'..=b'7').contains(b))
                .count();
            let n = u32::from_str_radix(&text[pos..pos + digits], 8)
                .map_err(|e| LitError::Syntax(e.to_string()))?;
            Ok((code_point(n)?, pos + digits))
        }
        'x' => {
            let (n, end) = hex(text, pos + 1, 2)?;
            Ok((code_point(n)?, end))
        }
        'u' | 'U' => {
            let (n, end) = hex(text, pos + 1, if c == 'u' { 4 } else { 8 })?;
            // A surrogate pair written as two escapes is one character.
            if (0xD800..0xDC00).contains(&n) && text[end..].starts_with("\\u") {
                if let Ok((low, after)) = hex(text, end + 2, 4)
                    && (0xDC00..0xE000).contains(&low)
                {
                    let joined = 0x10000 + ((n - 0xD800) << 10) + (low - 0xDC00);
                    return Ok((code_point(joined)?, after));
                }
                if text.len() - end < 6 {
                    return Err(LitError::Incomplete);
                }
            }
            Ok((code_point(n)?, end))
        }
        // Unknown escapes (and `\N{…}`, whose names this does not know) keep their backslash.
        other => Ok((format!("\\{other}"), pos + other.len_utf8())),
    }
}

/// A number at `pos` as JSON text.
fn number(text: &str, pos: usize) -> Read<String> {
    let bytes = text.as_bytes();
    let mut end = pos;
    let based = bytes.get(pos) == Some(&b'0')
        && bytes
            .get(pos + 1)
            .is_some_and(|b| matches!(b.to_ascii_lowercase(), b'x' | b'o' | b'b'));
    while let Some(&b) = bytes.get(end) {
        let sign_of_exponent = !based
            && matches!(b, b'+' | b'-')
            && end > pos
            && matches!(bytes[end - 1], b'e' | b'E');
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || sign_of_exponent {
            end += 1;
        } else {
            break;
        }
    }
    if end == text.len() {
        // `12` may become `123`.
        return Err(LitError::Incomplete);
    }
    let token: String = text[pos..end].chars().filter(|&c| c != '_').collect();
    let lower = token.to_ascii_lowercase();
    if lower.ends_with('j') {
        return not_literal("a complex number");
    }
    if based {
        let radix = match lower.as_bytes()[1] {
            b'x' => 16,
            b'o' => 8,
            _ => 2,
        };
        return u128::from_str_radix(&lower[2..], radix)
            .map(|n| (n.to_string(), end))
            .map_err(|_| LitError::Syntax(format!("'{token}' is not a number")));
    }
    let (mantissa, exponent) = match lower.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (lower.as_str(), None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits_only(e)
    });
    if !digits_only(int)
        || !frac.is_none_or(digits_only)
        || (int.is_empty() && frac.is_none_or(str::is_empty))
        || !exponent_ok
    {
        return syntax(format!("'{token}' is not a number"));
    }
    // JSON wants no leading zeros, digits on both sides of the point.
    let int = int.trim_start_matches('0');
    let mut json = if int.is_empty() { "0" } else { int }.to_string();
    if let Some(frac) = frac {
        json.push('.');
        json.push_str(if frac.is_empty() { "0" } else { frac });
    }
    if let Some(exponent) = exponent {
        json.push('e');
        json.push_str(exponent);
    }
    // Python reads `1e999` as infinity, which JSON cannot write (json.dumps gives the invalid
    // `Infinity`); a JSON reader refuses such a number, so it is no value here either.
    if !json.parse::<f64>().is_ok_and(f64::is_finite) {
        return syntax(format!("'{token}' is beyond the range of a JSON number"));
    }
    Ok((json, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Result<serde_json::Value, LitError> {
        // A delimiter after the value, as inside a call.
        let padded = format!("{text})");
        let (json, end) = value(&padded, 0)?;
        assert_eq!(&padded[end..], ")", "{text}");
        Ok(serde_json::from_str(&json).unwrap())
    }

    #[test]
    fn literals_become_json() {
        use serde_json::json as j;
        assert_eq!(json(r#""a\"b""#).unwrap(), j!("a\"b"));
        assert_eq!(json(r#"'it\'s'"#).unwrap(), j!("it's"));
        assert_eq!(json(r#"'say "hi"'"#).unwrap(), j!("say \"hi\""));
        assert_eq!(
            json(r#"'\n\t\\\x41\u00e9\U0001F327\101\q'"#).unwrap(),
            j!("\n\t\\Aé🌧A\\q")
        );
        assert_eq!(json(r#"'\ud83c\udf27'"#).unwrap(), j!("🌧"));
        assert_eq!(json(r#"r'C:\dir\n'"#).unwrap(), j!("C:\\dir\\n"));
        assert_eq!(json("'''a\n'b'''").unwrap(), j!("a\n'b"));
        assert_eq!(json(r#""a" 'b' "c""#).unwrap(), j!("abc"));
        assert_eq!(json("''").unwrap(), j!(""));
        assert_eq!(json("'東京 🌧'").unwrap(), j!("東京 🌧"));
        assert_eq!(json("42").unwrap(), j!(42));
        assert_eq!(json("-1_000").unwrap(), j!(-1000));
        assert_eq!(json("0x1F").unwrap(), j!(31));
        assert_eq!(json(".5").unwrap(), j!(0.5));
        assert_eq!(json("1.").unwrap(), j!(1.0));
        assert_eq!(json("-2.5e-3").unwrap(), j!(-0.0025));
        assert_eq!(json("1E+3").unwrap(), j!(1000.0));
        assert_eq!(json("True").unwrap(), j!(true));
        assert_eq!(json("None").unwrap(), j!(null));
        assert_eq!(json("[1, 'a', [None], ]").unwrap(), j!([1, "a", [null]]));
        assert_eq!(json("(1, 2)").unwrap(), j!([1, 2]));
        assert_eq!(json("(1,)").unwrap(), j!([1]));
        assert_eq!(json("(1)").unwrap(), j!(1));
        assert_eq!(json("()").unwrap(), j!([]));
        assert_eq!(json("{}").unwrap(), j!({}));
        assert_eq!(json("{1, 2}").unwrap(), j!([1, 2]));
        assert_eq!(
            json("{'a': {'b': [True, False]}, 1: 'x', None: 2, 'a': 3}").unwrap(),
            j!({"a": 3, "1": "x", "null": 2})
        );
    }

    #[test]
    fn numbers_keep_their_digits() {
        let (text, _) = value("123456789012345678901234567890,", 0).unwrap();
        assert_eq!(text, "123456789012345678901234567890");
        let (text, _) = value("007.50,", 0).unwrap();
        assert_eq!(text, "7.50");
    }

    #[test]
    fn cut_values_are_incomplete() {
        for text in [
            "'abc", "\"a\\", "'a\\u00", "12", "[1, 2", "{'a': ", "Tru", "None", "''", "'''a''",
            "(", "-", "r", "'\\ud83c",
        ] {
            assert_eq!(value(text, 0), Err(LitError::Incomplete), "{text}");
        }
    }

    #[test]
    fn names_and_bad_syntax_are_told_apart() {
        assert!(matches!(json("city"), Err(LitError::NotLiteral(_))));
        assert!(matches!(json("f'{x}'"), Err(LitError::NotLiteral(_))));
        assert!(matches!(json("1j"), Err(LitError::NotLiteral(_))));
        assert!(matches!(json("[1 2]"), Err(LitError::Syntax(_))));
        assert!(matches!(json("'a\nb'"), Err(LitError::Syntax(_))));
        assert!(matches!(json("1.2.3"), Err(LitError::Syntax(_))));
        assert!(matches!(json("@"), Err(LitError::Syntax(_))));
        assert!(matches!(json("1e999"), Err(LitError::Syntax(_))));
        assert!(matches!(json(&"9".repeat(400)), Err(LitError::Syntax(_))));
        assert_eq!(value("1e-999)", 0), Ok(("1e-999".to_string(), 6)));
    }
}
