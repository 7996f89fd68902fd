//! The `jinja` adapter renders the official Hugging Face chat templates exactly as transformers
//! does. `scripts/render_references.py` rendered each conversation of `tests/references/*.jsonl`
//! with Python jinja2 set up as transformers sets it up; here the same requests go through the
//! host's request conversion and the built-in adapter, with the same template text, and must give
//! the same bytes (or fail where Python failed).
//!
//! The templates are not in the repository: they live beside the checkout, in
//! `../shared/templates` (or `$PLUGBOARD_TEMPLATES`).

use std::path::PathBuf;
use std::sync::Arc;

use plugboard::adapter::{AdapterError, ModelConfig};
use plugboard::chat::ChatRequest;
use plugboard::plugins::{CallError, Plugin, PluginHost};
use plugboard_tests::{root, runtime};
use serde_json::Value;

fn templates_dir() -> PathBuf {
    std::env::var_os("PLUGBOARD_TEMPLATES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("..").join("shared").join("templates"))
}

/// The reference files, sorted by template name.
fn references() -> Vec<(String, PathBuf)> {
    let dir = root().join("tests").join("references");
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .filter_map(|p| Some((p.file_stem()?.to_string_lossy().into_owned(), p)))
        .collect();
    files.sort();
    files
}

fn text(case: &Value, key: &str) -> Option<String> {
    case.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Where two prompts part, with a little context, so a failure is readable.
fn first_difference(got: &str, expected: &str) -> String {
    let at = got
        .char_indices()
        .zip(expected.chars())
        .find(|((_, a), b)| a != b)
        .map(|((i, _), _)| i)
        .unwrap_or_else(|| got.len().min(expected.len()));
    let around = |s: &str| {
        let mut start = at.saturating_sub(60);
        while !s.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (at + 60).min(s.len());
        while !s.is_char_boundary(end) {
            end += 1;
        }
        format!("{:?}", s.get(start..end).unwrap_or(""))
    };
    format!(
        "the prompt differs at byte {at} (got {} bytes, expected {}):\n      got      …{}…\n      expected …{}…",
        got.len(),
        expected.len(),
        around(got),
        around(expected)
    )
}

/// Renders one reference conversation and compares it with Python's result.
fn check(plugin: &Arc<Plugin>, template: &str, case: &Value) -> Result<(), String> {
    let chat: ChatRequest = serde_json::from_value(case["request"].clone())
        .map_err(|e| format!("the request does not read as a chat request: {e}"))?;
    let model = ModelConfig {
        chat_template: Some(template.to_string()),
        bos_token: text(case, "bos_token"),
        eos_token: text(case, "eos_token"),
    };
    let mut request = chat
        .to_prompt_request(model)
        .map_err(|e| format!("the host refuses the request: {e}"))?;
    if let Some(variables) = case.get("variables").and_then(Value::as_object) {
        request
            .template_variables
            .extend(variables.iter().map(|(k, v)| (k.clone(), v.to_string())));
    }
    let result = plugin.format_prompt(&request);
    match (result, text(case, "prompt"), text(case, "error")) {
        (Ok(prompt), Some(expected), _) if prompt.text == expected => Ok(()),
        (Ok(prompt), Some(expected), _) => Err(first_difference(&prompt.text, &expected)),
        (Ok(_), None, Some(error)) => {
            Err(format!("rendered, but transformers fails with: {error}"))
        }
        (
            Err(CallError::Adapter {
                error: AdapterError::InvalidRequest(message),
                ..
            }),
            None,
            Some(error),
        ) => {
            // The template's own raise_exception message must come through unchanged; other
            // failures (Python's TypeError, …) only need to fail too.
            let raised = case.get("error_type").and_then(Value::as_str) == Some("raise_exception");
            if raised && message != error {
                Err(format!(
                    "refused with {message:?}, but the template raises {error:?}"
                ))
            } else {
                Ok(())
            }
        }
        (Err(e), Some(_), _) => Err(format!("transformers renders it, the adapter fails: {e}")),
        (Err(e), None, error) => Err(format!("expected invalid_request ({error:?}), got {e}")),
        (Ok(_), None, None) => Err("the reference has neither \"prompt\" nor \"error\"".into()),
    }
}

#[test]
fn jinja_adapter_renders_the_official_templates_as_transformers_does() {
    let dir = templates_dir();
    assert!(
        dir.is_dir(),
        "the official chat templates are missing: expected them in {} (the shared folder beside \
         the checkout), or set PLUGBOARD_TEMPLATES",
        dir.display()
    );
    let host = PluginHost::new(runtime(), true, None);
    let plugin = host.get("jinja").expect("the jinja adapter is built in");
    let references = references();
    assert!(
        !references.is_empty(),
        "no tests/references/*.jsonl: run scripts/render_references.py"
    );
    let mut checked = 0;
    let mut failures = Vec::new();
    for (stem, path) in &references {
        let template_path = dir.join(format!("{stem}.jinja"));
        let template = std::fs::read_to_string(&template_path).unwrap_or_else(|e| {
            panic!(
                "{}: cannot read its template {}: {e}",
                path.display(),
                template_path.display()
            )
        });
        let lines = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        for (n, line) in lines
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let case: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: not JSON: {e}", path.display(), n + 1));
            let name = text(&case, "name").unwrap_or_else(|| format!("line {}", n + 1));
            checked += 1;
            if let Err(message) = check(&plugin, &template, &case) {
                failures.push(format!("{stem} / {name}: {message}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} reference renders differ from transformers':\n  - {}",
        failures.len(),
        failures.join("\n  - ")
    );
}

#[test]
fn every_official_template_has_references() {
    let dir = templates_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        panic!(
            "the official chat templates are missing: expected them in {} (the shared folder \
             beside the checkout), or set PLUGBOARD_TEMPLATES",
            dir.display()
        );
    };
    let mut templates: Vec<String> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jinja"))
        .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
        .collect();
    templates.sort();
    let referenced: Vec<String> = references().into_iter().map(|(stem, _)| stem).collect();
    assert_eq!(
        templates,
        referenced,
        "tests/references is out of date with {}: run scripts/render_references.py",
        dir.display()
    );
}
