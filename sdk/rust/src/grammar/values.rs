//! Arguments grammars for families that do not write their arguments as a JSON object:
//! pythonic calls (`get_weather(city="Paris", days=3)`), FunctionGemma's
//! `{city:<escape>Paris<escape>,days:3}`.
//!
//! The host's `args0`, `args1`, … rules are JSON objects, so these families build their own
//! from each tool's JSON Schema. They do not compile schemas: every part that is written the
//! JSON way in the family's syntax (numbers everywhere; for Python, strings, and lists and dicts
//! that can hold no boolean or null) is handed to llguidance as an inline `%json` with its own
//! schema, so bounds, patterns and lengths hold there exactly as in JSON. Only the structure
//! around those parts — which keys, in which syntax, what separates items, how booleans, null
//! and constants are spelt — is walked here. What the walk cannot see (a `$ref` deeper than
//! [`MAX_DEPTH`], `patternProperties`, `not`) becomes "any value" of the syntax: the host still
//! checks the arguments against the schema after generation.
//!
//! Objects are written with their properties in the order the schema lists them (or sorted,
//! for families shown sorted keys), each optional one present or not; keys the schema does not
//! name are never generated. Each family's parser reads keys in any order, so this narrows what
//! the model may write without changing what it means.

use serde_json::{Map, Value, json};

use super::literal;

/// How deep the walk follows nested schemas and `$ref`s before it settles for "any value".
pub const MAX_DEPTH: usize = 8;

/// Writes a string valid against a string schema as a Lark expression, defining the rules it
/// needs.
pub type StringWriter<'a> = &'a dyn Fn(&Map<String, Value>, &mut Rules) -> String;

/// How a family writes values.
pub struct ValueSyntax<'a> {
    /// Writes a string value (not an enum or const) valid against its schema, as a Lark
    /// expression, defining any rules it needs. `None`: JSON's string literal (`%json` with
    /// the schema).
    pub string: Option<StringWriter<'a>>,
    /// A constant (an `enum` member, a `const`) as the family writes it.
    pub constant: &'a dyn Fn(&Value) -> String,
    /// `true` and `false`, and null, as Lark expressions.
    pub boolean: &'a str,
    pub null: &'a str,
    /// An object's key with what follows it before the value, e.g. `"\"city\": "`; `None`
    /// for a key the syntax cannot write.
    pub key: &'a dyn Fn(&str) -> Option<String>,
    /// Any key the syntax can write, with what follows it (for objects of any keys).
    pub any_key: &'a str,
    /// Between two items of a list or an object.
    pub separator: &'a str,
    /// Around a list and an object.
    pub list: (&'a str, &'a str),
    pub object: (&'a str, &'a str),
    /// A list or object holding no boolean and no null is written as JSON writes it (Python).
    pub json_containers: bool,
    /// An object's keys in sorted order (as templates that `dictsort` show them), not in the
    /// schema's.
    pub sorted_keys: bool,
}

/// Lark rules, named apart from other grammars' by a prefix.
pub struct Rules {
    prefix: String,
    lines: Vec<String>,
}

impl Rules {
    /// Defines a rule (`attributes` such as `[suffix="…"]`, or empty) and returns its name.
    pub fn define(&mut self, attributes: &str, expression: String) -> String {
        let name = format!("{}_{}", self.prefix, self.lines.len());
        self.lines.push(format!("{name}{attributes}: {expression}"));
        name
    }
}

/// The Lark rules of one grammar's values, built as schemas are walked: nested objects and
/// "any value" need rules of their own.
pub struct ValueGrammar<'a> {
    syntax: &'a ValueSyntax<'a>,
    /// The root schema, where `$ref`s point.
    root: Value,
    rules: Rules,
    any: Option<String>,
}

/// llguidance's options for JSON parts: the separators chat templates show, no other
/// whitespace (as the host's `args` rules).
fn canonical() -> Value {
    json!({"whitespace_flexible": false, "item_separator": ", ?", "key_separator": ": ?"})
}

impl<'a> ValueGrammar<'a> {
    /// `prefix` names this grammar's rules (`{prefix}_1`, …) apart from others'.
    pub fn new(syntax: &'a ValueSyntax<'a>, root: &Value, prefix: &str) -> Self {
        ValueGrammar {
            syntax,
            root: root.clone(),
            rules: Rules {
                prefix: prefix.to_string(),
                lines: Vec::new(),
            },
            any: None,
        }
    }

    /// The rules defined so far, one per line.
    pub fn rules(&self) -> String {
        self.rules.lines.iter().map(|r| format!("{r}\n")).collect()
    }

    fn rule(&mut self, expression: String) -> String {
        self.rules.define("", expression)
    }

    /// `%json` of a part of the schema, with the root's definitions so its `$ref`s resolve.
    fn json(&self, schema: &Value) -> String {
        let mut schema = match schema {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        };
        for defs in ["$defs", "definitions"] {
            if let Some(d) = self.root.get(defs) {
                schema.entry(defs).or_insert_with(|| d.clone());
            }
        }
        schema.insert("x-guidance".into(), canonical());
        format!("%json {}", Value::Object(schema))
    }

    /// The schema a local `$ref` points to.
    fn resolve<'s>(&'s self, schema: &'s Value) -> Option<&'s Value> {
        let target = schema.get("$ref")?.as_str()?.strip_prefix('#')?;
        self.root.pointer(target)
    }

    /// A value valid against `schema`, as a Lark expression.
    pub fn value(&mut self, schema: &Value, depth: usize) -> String {
        if depth > MAX_DEPTH {
            return self.any();
        }
        // `true` (and anything else not an object) allows any value.
        let Value::Object(map) = schema else {
            return self.any();
        };
        if map.contains_key("$ref") {
            return match self.resolve(schema).cloned() {
                Some(target) => self.value(&target, depth + 1),
                None => self.any(),
            };
        }
        if let Some(constant) = map.get("const") {
            return (self.syntax.constant)(constant);
        }
        if let Some(Value::Array(members)) = map.get("enum") {
            let alternatives: Vec<String> = members.iter().map(self.syntax.constant).collect();
            return group(&alternatives);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = map.get(key) {
                let alternatives: Vec<String> =
                    branches.iter().map(|b| self.value(b, depth + 1)).collect();
                return group(&alternatives);
            }
        }
        if let Some(Value::Array(parts)) = map.get("allOf")
            && let [only] = parts.as_slice()
        {
            return self.value(only, depth + 1);
        }
        let types: Vec<&str> = match map.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ if map.contains_key("properties") => vec!["object"],
            _ if map.contains_key("items") => vec!["array"],
            _ => return self.any(),
        };
        let alternatives: Vec<String> = types.iter().map(|t| self.typed(map, t, depth)).collect();
        group(&alternatives)
    }

    /// A value of one JSON type.
    fn typed(&mut self, map: &Map<String, Value>, kind: &str, depth: usize) -> String {
        let mut only = map.clone();
        only.insert("type".into(), Value::String(kind.into()));
        let schema = Value::Object(only);
        match kind {
            "boolean" => format!("({})", self.syntax.boolean),
            "null" => self.syntax.null.to_string(),
            "integer" | "number" => self.json(&schema),
            "string" => match self.syntax.string {
                Some(string) => string(schema.as_object().expect("an object"), &mut self.rules),
                None => self.json(&schema),
            },
            "array" if self.syntax.json_containers && self.json_safe(&schema, depth) => {
                self.json(&schema)
            }
            "array" => {
                let item = match map.get("items") {
                    Some(items) => self.value(items, depth + 1),
                    None => self.any(),
                };
                let item = self.rule(item);
                let min = map.get("minItems").and_then(Value::as_u64).unwrap_or(0);
                let max = map.get("maxItems").and_then(Value::as_u64);
                self.list(&item, min, max)
            }
            "object" if self.syntax.json_containers && self.json_safe(&schema, depth) => {
                self.json(&schema)
            }
            "object" => {
                let syntax = self.syntax;
                match self.properties(map, depth, syntax.key, syntax.any_key, syntax.separator) {
                    Some(body) => {
                        let (open, close) = syntax.object;
                        format!("{} {body} {}", literal(open), literal(close))
                    }
                    None => self.any(),
                }
            }
            _ => self.any(),
        }
    }

    /// `open item (sep item)* close` with the item count bounded.
    fn list(&self, item: &str, min: u64, max: Option<u64>) -> String {
        let (open, close) = self.syntax.list;
        let sep = literal(self.syntax.separator);
        let more = match (min.saturating_sub(1), max.map(|m| m.saturating_sub(1))) {
            (_, Some(0)) => String::new(),
            (0, None) => format!("({sep} {item})*"),
            (lo, None) => format!("({sep} {item}){{{lo},}}"),
            (lo, Some(hi)) => format!("({sep} {item}){{{lo},{hi}}}"),
        };
        let items = match (min, max) {
            (_, Some(0)) => String::new(),
            (0, _) => format!("({item} {more})?"),
            _ => format!("{item} {more}"),
        };
        format!("{} {items} {}", literal(open), literal(close))
    }

    /// An object's properties as `key value` items: the expression
    /// between its brackets (or a call's parentheses). `key` writes a key and what follows it;
    /// `any_key` any key, for objects whose keys the schema leaves open. An optional property
    /// that `key` cannot write is left out; `None` when a required one cannot be written.
    pub fn properties(
        &mut self,
        map: &Map<String, Value>,
        depth: usize,
        key: &dyn Fn(&str) -> Option<String>,
        any_key: &str,
        separator: &str,
    ) -> Option<String> {
        let properties = match map.get("properties") {
            Some(Value::Object(p)) => p.clone(),
            _ => Map::new(),
        };
        if properties.is_empty() && map.get("additionalProperties") != Some(&Value::Bool(false)) {
            // An object of any keys: any values under any keys.
            return Some(self.any_members(any_key, separator));
        }
        let required: Vec<&str> = match map.get("required") {
            Some(Value::Array(r)) => r.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let mut names: Vec<&String> = properties.keys().collect();
        if self.syntax.sorted_keys {
            names.sort();
        }
        let mut items: Vec<(String, bool)> = Vec::new();
        for name in names {
            let is_required = required.contains(&name.as_str());
            let written = match key(name) {
                Some(written) => written,
                None if is_required => return None,
                None => continue,
            };
            let value = self.value(&properties[name], depth + 1);
            items.push((format!("{written} {value}"), is_required));
        }
        // From the last item back: `tail` is what may follow the item before (a rule, as two
        // expressions use it), `head` the items from this one on, where the first present
        // one may be this or a later one.
        let sep = literal(separator);
        let mut tail = String::new();
        let mut head = String::new();
        for (index, (item, is_required)) in items.iter().enumerate().rev() {
            let item = self.rule(item.clone());
            head = match (is_required, head.is_empty()) {
                (true, _) => format!("{item} {tail}"),
                (false, true) => format!("({item} {tail})?"),
                (false, false) => format!("({item} {tail} | {head})"),
            };
            if index > 0 {
                tail = self.rule(if *is_required {
                    format!("{sep} {item} {tail}")
                } else {
                    format!("({sep} {item})? {tail}")
                });
            }
        }
        Some(head)
    }

    /// Whether a schema's JSON text is the family's text too: it can hold no boolean, no null
    /// and nothing the walk cannot see.
    fn json_safe(&self, schema: &Value, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        let Value::Object(map) = schema else {
            return false;
        };
        if let Some(target) = self.resolve(schema) {
            return self.json_safe(target, depth + 1);
        }
        if map.contains_key("$ref") {
            return false;
        }
        let constant_safe = |v: &Value| !holds_literal(v);
        if let Some(c) = map.get("const") {
            return constant_safe(c);
        }
        if let Some(Value::Array(members)) = map.get("enum") {
            return members.iter().all(constant_safe);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(Value::Array(branches)) = map.get(key) {
                return branches.iter().all(|b| self.json_safe(b, depth + 1));
            }
        }
        let types: Vec<&str> = match map.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return false,
        };
        types.iter().all(|t| match *t {
            "string" | "integer" | "number" => true,
            "array" => map
                .get("items")
                .is_some_and(|items| self.json_safe(items, depth + 1)),
            "object" => {
                let closed = map.get("additionalProperties") == Some(&Value::Bool(false));
                closed
                    && map.get("properties").is_some_and(|p| {
                        p.as_object()
                            .is_some_and(|p| p.values().all(|s| self.json_safe(s, depth + 1)))
                    })
            }
            _ => false,
        })
    }

    /// Any value of the syntax (a rule of its own, recursive).
    pub fn any(&mut self) -> String {
        if let Some(any) = &self.any {
            return any.clone();
        }
        let name = format!("{}_any", self.rules.prefix);
        self.any = Some(name.clone());
        let string = match self.syntax.string {
            Some(string) => string(
                json!({"type": "string"}).as_object().expect("object"),
                &mut self.rules,
            ),
            None => self.json(&json!({"type": "string"})),
        };
        let number = self.json(&json!({"type": "number"}));
        let list = self.list(&name, 0, None);
        let members = self.any_members(self.syntax.any_key, self.syntax.separator);
        let (open, close) = self.syntax.object;
        let object = format!("{} {members} {}", literal(open), literal(close));
        let expression = group(&[
            string,
            number,
            self.syntax.boolean.to_string(),
            self.syntax.null.to_string(),
            list,
            object,
        ]);
        self.rules.lines.push(format!("{name}: {expression}"));
        name
    }

    /// Any members of an object or call: any keys (`any_key`, with what follows it), any
    /// values.
    fn any_members(&mut self, any_key: &str, separator: &str) -> String {
        let any = self.any();
        let member = self.rule(format!("{any_key} {any}"));
        let sep = literal(separator);
        format!("({member} ({sep} {member})*)?")
    }
}

/// Alternatives as one Lark expression.
fn group(alternatives: &[String]) -> String {
    match alternatives {
        [] => "\"\"".into(),
        [one] => one.clone(),
        many => format!("({})", many.join(" | ")),
    }
}

/// Whether a JSON value holds a boolean or null anywhere.
fn holds_literal(value: &Value) -> bool {
    match value {
        Value::Bool(_) | Value::Null => true,
        Value::Array(items) => items.iter().any(holds_literal),
        Value::Object(map) => map.values().any(holds_literal),
        _ => false,
    }
}

/// The text of a string valid against a string schema, as a Lark regular expression (between
/// `/…/`), for families that write strings unquoted (between markers): its `pattern` when it
/// is one the grammar can hold (no lookaround, no back-references), else its length bounds,
/// else any text. (The host checks the rest after generation.)
pub fn string_regex(schema: &Map<String, Value>) -> String {
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
        && !["(?=", "(?!", "(?<=", "(?<!", "\\k<"]
            .iter()
            .any(|p| pattern.contains(p))
        && !(1..=9).any(|d| pattern.contains(&format!("\\{d}")))
    {
        // JSON Schema patterns match anywhere unless anchored.
        let (start, body) = match pattern.strip_prefix('^') {
            Some(rest) => ("", rest),
            None => ("(?s:.*)", pattern),
        };
        let (body, end) = match body.strip_suffix('$') {
            Some(rest) if !rest.ends_with('\\') => (rest, ""),
            _ => (body, "(?s:.*)"),
        };
        return format!("{start}(?:{}){end}", body.replace('/', "\\/"));
    }
    let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
    match schema.get("maxLength").and_then(Value::as_u64) {
        Some(max) => format!("(?s:.{{{min},{max}}})"),
        None if min > 0 => format!("(?s:.{{{min},}})"),
        None => "(?s:.*)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_patterns_are_anchored_where_json_schema_anchors_them() {
        let regex = |schema: Value| string_regex(schema.as_object().unwrap());
        assert_eq!(regex(json!({"pattern": "^[0-9]{6}$"})), "(?:[0-9]{6})");
        assert_eq!(regex(json!({"pattern": "a/b"})), "(?s:.*)(?:a\\/b)(?s:.*)");
        // Lookaround cannot be held: the length bounds are.
        assert_eq!(
            regex(json!({"pattern": "^(?!x)", "maxLength": 8})),
            "(?s:.{0,8})"
        );
        assert_eq!(regex(json!({"minLength": 2})), "(?s:.{2,})");
        assert_eq!(regex(json!({})), "(?s:.*)");
    }

    #[test]
    fn only_what_json_would_misspell_is_walked() {
        let syntax = super::super::python_values();
        let root = json!({});
        let mut values = ValueGrammar::new(&syntax, &root, "v");
        // No boolean or null anywhere: JSON's own text, schema and all.
        let plain = json!({"type": "array", "items": {"type": "integer", "maximum": 3}});
        let value = values.value(&plain, 0);
        assert!(
            value.starts_with("%json {") && value.contains("\"maximum\":3"),
            "{value}"
        );
        // A nullable string and a boolean are spelt the family's way.
        let nullable = json!({"type": ["string", "null"]});
        let value = values.value(&nullable, 0);
        assert!(value.starts_with("(%json {\"type\":\"string\""), "{value}");
        assert!(value.ends_with("| \"None\")"), "{value}");
        assert_eq!(
            values.value(&json!({"enum": [true, "a"]}), 0),
            "(\"True\" | \"\\\"a\\\"\")"
        );
    }

    #[test]
    fn optional_properties_may_each_be_left_out_and_required_ones_not() {
        let syntax = super::super::python_values();
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "boolean"}, "b": {"type": "boolean"}, "c": {"type": "boolean"}},
            "required": ["b"]});
        let mut values = ValueGrammar::new(&syntax, &schema, "v");
        let key = |k: &str| Some(literal(&format!("{k}=")));
        let head = values
            .properties(schema.as_object().unwrap(), 0, &key, "", ", ")
            .unwrap();
        let rules = values.rules();
        // b alone, a then b, b then c, a b c: never without b.
        assert!(head.starts_with("(v_"), "{head}");
        assert_eq!(rules.matches("\"b=\"").count(), 1, "{rules}");
        assert!(rules.contains("\", \" v_"), "{rules}");
        // A required property the syntax cannot name: no call can be written.
        let none = |_: &str| None;
        assert!(
            values
                .properties(schema.as_object().unwrap(), 0, &none, "", ", ")
                .is_none()
        );
    }
}
