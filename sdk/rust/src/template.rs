//! Hugging Face chat templates, rendered exactly as transformers' `apply_chat_template` renders
//! them (cargo feature `templates`).
//!
//! A model's own chat template (from its GGUF's `tokenizer.chat_template` or its
//! `tokenizer_config.json`) arrives in
//! [`ModelConfig::chat_template`](crate::types::ModelConfig::chat_template). An adapter that
//! renders it promises the bytes transformers would produce, so this module reproduces
//! transformers' Jinja setup rather than plain Jinja:
//!
//! - `trim_blocks` and `lstrip_blocks` on, no trailing newline kept, `break`/`continue` allowed;
//! - `raise_exception(message)` fails the render with [`AdapterError::InvalidRequest`] carrying
//!   exactly the template's message (e.g. "Conversation roles must alternate …");
//! - `tojson` is Python's `json.dumps(value, ensure_ascii=False)`: keys in their order (never
//!   sorted), no HTML escaping, `", "` and `": "` separators (`","` between items with `indent`);
//!   it also takes `indent`, `ensure_ascii`, `separators` and `sort_keys`;
//! - `{{ value }}` and `|string` print what Python's `str()` prints (`None`, `True`, `1e+21`,
//!   `{'a': 1}`), and Python's string, dict and list methods work (`.strip()`, `.split()`,
//!   `.startswith()`, `.items()`, `.get()`, …);
//! - `strftime_now(format)` formats the current time (UTC inside the sandbox) like Python's
//!   `strftime`. To make prompts reproducible, pin it with the template variable
//!   [`NOW_VARIABLE`] (`plugboard_now`), a JSON string `"YYYY-MM-DD"` or
//!   `"YYYY-MM-DDTHH:MM[:SS]"`: then `strftime_now` formats that moment instead. The reference
//!   renders (`scripts/render_references.py`) pin it the same way. Like any template variable it
//!   is also visible to the template, which ignores it;
//! - transformers' `{% generation %}…{% endgeneration %}` marks are accepted and render their
//!   body.
//!
//! The variables are those transformers passes: `messages` (OpenAI-shaped dicts: `role`,
//! `content` — `None` for an assistant turn that only calls tools —, and only when set
//! `reasoning_content`, `tool_calls` as `[{"id", "type": "function", "function": {"name",
//! "arguments": {…}}}]` with the arguments decoded to an object, `tool_call_id`, `name`),
//! `tools` (OpenAI tool objects, see [`crate::prompt::tool_json`]; `None` without tools),
//! `documents` (`None`), `add_generation_prompt`, `bos_token` and `eos_token` (undefined when
//! the model has none), and every entry of [`PromptRequest::template_variables`], which
//! overrides any of them.
//!
//! ```
//! use plugboard_sdk::template::render_chat_template;
//! use plugboard_sdk::types::*;
//!
//! let request = PromptRequest {
//!     messages: vec![Message {
//!         role: Role::User,
//!         content: Some("Hi".into()),
//!         reasoning: None,
//!         tool_calls: vec![],
//!         tool_call_id: None,
//!         name: None,
//!     }],
//!     tools: vec![],
//!     tool_choice: ToolChoice::Auto,
//!     parallel_tool_calls: true,
//!     add_generation_prompt: true,
//!     model: ModelConfig { chat_template: None, bos_token: Some("<s>".into()), eos_token: None },
//!     template_variables: vec![],
//! };
//! let template = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}\
//!                 {% if add_generation_prompt %}[assistant] {% endif %}";
//! assert_eq!(render_chat_template(template, &request).unwrap(), "<s>[user] Hi\n[assistant] ");
//! ```
//!
//! A family's official template written out natively serves models that come without one
//! ([`render_own_or`]); those that several families share live here: [`llama3`].

mod context;
pub mod llama3;
mod python;
mod strftime;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Rest, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};

use crate::types::{AdapterError, PromptRequest};
use python::JsonStyle;
use strftime::DateTime;

/// The template variable that pins `strftime_now`: a JSON string `"YYYY-MM-DD"` or
/// `"YYYY-MM-DDTHH:MM[:SS]"`, the moment `strftime_now` then formats.
pub const NOW_VARIABLE: &str = "plugboard_now";

/// Renders a Hugging Face chat template for a request, as transformers' apply_chat_template does.
///
/// Errors: the template's own `raise_exception(message)` is `InvalidRequest(message)`; any other
/// failure while rendering (a missing key, `+` on a string and a dict, …, the failures Python
/// would raise too) is `InvalidRequest` with the engine's explanation; a template that is not
/// valid Jinja is `Unsupported`; a bad [`NOW_VARIABLE`] is `InvalidRequest`.
pub fn render_chat_template(
    template: &str,
    request: &PromptRequest,
) -> Result<String, AdapterError> {
    let now = pinned_now(request)?.unwrap_or_else(DateTime::now);
    let env = environment(now)?;
    let source = accept_generation_marks(template);
    let compiled = env.template_from_str(&source).map_err(to_adapter_error)?;
    let vars = Value::from_pairs(context::variables(request));
    compiled.render(vars).map_err(to_adapter_error)
}

/// The request rendered by the model's own chat template when the host passes one
/// ([`render_chat_template`]), else by `builtin`: the family's official template written out
/// natively, for models whose configuration carries none.
pub fn render_own_or(
    request: &PromptRequest,
    builtin: impl FnOnce(&PromptRequest) -> Result<String, AdapterError>,
) -> Result<String, AdapterError> {
    match &request.model.chat_template {
        Some(template) => render_chat_template(template, request),
        None => builtin(request),
    }
}

/// What a template's `strftime_now(format)` prints for this request: the moment
/// [`NOW_VARIABLE`] pins, else the current time (UTC), formatted like Python's `strftime`. For
/// prompts written natively that date themselves as their official template does.
pub fn strftime_now(request: &PromptRequest, format: &str) -> Result<String, AdapterError> {
    Ok(pinned_now(request)?
        .unwrap_or_else(DateTime::now)
        .strftime(format))
}

/// The moment [`NOW_VARIABLE`] pins, if the request sets it.
fn pinned_now(request: &PromptRequest) -> Result<Option<DateTime>, AdapterError> {
    let Some((_, text)) = request
        .template_variables
        .iter()
        .find(|(name, _)| name == NOW_VARIABLE)
    else {
        return Ok(None);
    };
    let moment = serde_json::from_str::<String>(text)
        .ok()
        .and_then(|s| DateTime::parse(&s));
    match moment {
        Some(moment) => Ok(Some(moment)),
        None => Err(AdapterError::InvalidRequest(format!(
            "the template variable {NOW_VARIABLE} must be a date such as \"2025-03-04\" or \
             \"2025-03-04T09:05:07\", not {text}"
        ))),
    }
}

/// The message `raise_exception` was called with, carried as the render error's source.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

fn to_adapter_error(error: Error) -> AdapterError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(raised) = e.downcast_ref::<Raised>() {
            return AdapterError::InvalidRequest(raised.0.clone());
        }
        source = e.source();
    }
    match error.kind() {
        ErrorKind::SyntaxError => {
            AdapterError::Unsupported(format!("the chat template is not valid Jinja: {error}"))
        }
        _ => AdapterError::InvalidRequest(format!(
            "the chat template cannot render this request: {error}"
        )),
    }
}

/// transformers' Jinja environment, in minijinja.
fn environment(now: DateTime) -> Result<Environment<'static>, AdapterError> {
    let mut env = Environment::new();
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build()
        .map_err(|e| AdapterError::Unsupported(format!("template syntax settings: {e}")))?;
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(|out, _state, value| {
        out.write_str(&python::python_str(value))
            .map_err(|_| Error::new(ErrorKind::WriteFailure, "cannot write the prompt"))
    });
    env.add_filter("string", |value: &Value| python::python_str(value));
    env.add_test("none", |value: &Value| python::is_none(value));
    env.add_test("iterable", |value: &Value| python::is_iterable(value));
    env.add_filter("tojson", tojson);
    env.add_function(
        "raise_exception",
        |message: &Value| -> Result<Value, Error> {
            let message = python::python_str(message);
            Err(Error::new(ErrorKind::InvalidOperation, message.clone())
                .with_source(Raised(message)))
        },
    );
    env.add_function("strftime_now", move |format: &str| now.strftime(format));
    Ok(env)
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`, positional or by keyword.
fn tojson(value: &Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    const NAMES: [&str; 4] = ["ensure_ascii", "indent", "separators", "sort_keys"];
    if args.len() > NAMES.len() {
        return Err(Error::from(ErrorKind::TooManyArguments));
    }
    let mut given: Vec<(&str, Value)> = NAMES.iter().copied().zip(args.0).collect();
    for name in NAMES {
        if let Some(v) = kwargs.get::<Option<Value>>(name)? {
            given.push((name, v));
        }
    }
    kwargs.assert_all_used()?;
    let arg = |name: &str| given.iter().find(|(n, _)| *n == name).map(|(_, v)| v);

    let indent = match arg("indent") {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) if v.kind() == ValueKind::String => Some(v.as_str().unwrap_or_default().into()),
        Some(v) => match v.as_i64() {
            Some(n) => Some(" ".repeat(usize::try_from(n).unwrap_or(0))),
            None => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be a number or a string",
                ));
            }
        },
    };
    let mut style = JsonStyle::new(indent);
    style.ensure_ascii = arg("ensure_ascii").is_some_and(Value::is_true);
    style.sort_keys = arg("sort_keys").is_some_and(Value::is_true);
    if let Some(separators) = arg("separators").filter(|v| !v.is_none()) {
        let pair: Vec<Value> = separators.try_iter()?.collect();
        match pair.as_slice() {
            [item, key] if item.as_str().is_some() && key.as_str().is_some() => {
                style.item_separator = item.as_str().unwrap_or_default().into();
                style.key_separator = key.as_str().unwrap_or_default().into();
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: separators must be two strings",
                ));
            }
        }
    }
    python::dumps(value, &style).map(Value::from)
}

/// Rewrites transformers' `{% generation %}` / `{% endgeneration %}` (which mark the assistant's
/// tokens for training masks and otherwise render their body) as `{% if true %}` / `{% endif %}`,
/// keeping whitespace-control signs so the output is unchanged.
fn accept_generation_marks(template: &str) -> std::borrow::Cow<'_, str> {
    if !template.contains("generation") {
        return template.into();
    }
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find("{%") {
        out.push_str(&rest[..at]);
        let tag = &rest[at..];
        let Some(end) = tag.find("%}") else {
            break;
        };
        let inner = &tag[2..end];
        let body = inner
            .trim_start_matches(['-', '+'])
            .trim_end_matches(['-', '+']);
        let open = &inner[..inner.len() - inner.trim_start_matches(['-', '+']).len()];
        let close = &inner[inner.trim_end_matches(['-', '+']).len()..];
        let replacement = match body.trim() {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(statement) => out.push_str(&format!("{{%{open} {statement} {close}%}}")),
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out.into()
}

#[cfg(test)]
mod tests;
