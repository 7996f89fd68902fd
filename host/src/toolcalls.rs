//! Checking parsed tool calls against the request: the name must be an offered tool, the
//! arguments must be valid against the tool's JSON Schema, and `tool_choice` must be met.
//!
//! Open models hallucinate names and arguments. What happens to a call that fails is a
//! per-model [`ToolPolicy`]; the default drops the call and reports the problem in the
//! response (`plugboard.problems`), so a client never executes a call that does not fit the
//! tool it names, and never loses the information that the model tried.

use std::collections::HashMap;
use utoipa::ToSchema;

use serde::{Deserialize, Serialize};

use crate::adapter::{Problem, ProblemKind, Tool, ToolChoice};
use crate::chat::RequestError;

/// What to do with a call whose name is unknown or whose arguments do not fit the schema.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolPolicy {
    /// Fail the request with an error naming the problem.
    Reject,
    /// Leave the call out and report the problem beside the response.
    #[default]
    Drop,
    /// Return the call's JSON as assistant content instead of as a call.
    Content,
}

/// The tools of one request, their schemas compiled.
pub struct ToolCheck {
    validators: HashMap<String, jsonschema::Validator>,
    choice: ToolChoice,
}

impl ToolCheck {
    /// Compiles every tool's schema; an invalid schema is the client's error.
    pub fn new(tools: &[Tool], choice: &ToolChoice) -> Result<ToolCheck, RequestError> {
        let mut validators = HashMap::new();
        for (i, tool) in tools.iter().enumerate() {
            let param = format!("tools[{i}].function.parameters");
            let schema: serde_json::Value =
                serde_json::from_str(&tool.parameters).map_err(|e| RequestError {
                    message: format!("the parameters of tool '{}' are not JSON: {e}", tool.name),
                    param: Some(param.clone()),
                    code: None,
                })?;
            let validator = jsonschema::validator_for(&schema).map_err(|e| RequestError {
                message: format!(
                    "the parameters of tool '{}' are not a valid JSON Schema: {e}",
                    tool.name
                ),
                param: Some(param.clone()),
                code: Some("invalid_tool_schema"),
            })?;
            validators.insert(tool.name.clone(), validator);
        }
        Ok(ToolCheck {
            validators,
            choice: choice.clone(),
        })
    }

    pub fn choice(&self) -> &ToolChoice {
        &self.choice
    }

    /// Checks one complete call. `index` is the call's position in the output.
    pub fn check(&self, index: u32, name: &str, arguments: &str) -> Result<(), Problem> {
        let problem = |kind, message: String| Problem {
            kind,
            message,
            index: Some(index),
        };
        if let ToolChoice::Function(wanted) = &self.choice
            && wanted != name
        {
            return Err(problem(
                ProblemKind::UnknownTool,
                format!("call {index} names '{name}', but tool_choice requires '{wanted}'"),
            ));
        }
        let Some(validator) = self.validators.get(name) else {
            let mut offered: Vec<&str> = self.validators.keys().map(String::as_str).collect();
            offered.sort_unstable();
            return Err(problem(
                ProblemKind::UnknownTool,
                format!(
                    "call {index} names '{name}', which the request did not offer (offered: {})",
                    offered.join(", ")
                ),
            ));
        };
        let value: serde_json::Value = serde_json::from_str(arguments).map_err(|e| {
            problem(
                ProblemKind::MalformedJson,
                format!("call {index} ({name}): arguments are not JSON: {e}"),
            )
        })?;
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(problem(
                ProblemKind::InvalidArguments,
                format!(
                    "call {index} ({name}): arguments do not match the schema: {}",
                    errors.join("; ")
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Vec<Tool> {
        vec![Tool {
            name: "get_weather".into(),
            description: None,
            parameters: r#"{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}"#.into(),
        }]
    }

    #[test]
    fn checks_names_and_schemas() {
        let check = ToolCheck::new(&weather(), &ToolChoice::Auto).expect("valid schema");
        assert!(
            check
                .check(0, "get_weather", r#"{"city": "Paris"}"#)
                .is_ok()
        );
        let e = check.check(1, "get_time", "{}").unwrap_err();
        assert_eq!((e.kind, e.index), (ProblemKind::UnknownTool, Some(1)));
        let e = check
            .check(0, "get_weather", r#"{"town": "Paris"}"#)
            .unwrap_err();
        assert_eq!(e.kind, ProblemKind::InvalidArguments);
        assert!(e.message.contains("city"), "{}", e.message);
    }

    #[test]
    fn an_invalid_schema_names_its_tool() {
        let tools = vec![Tool {
            name: "t".into(),
            description: None,
            parameters: r#"{"type": "nonsense"}"#.into(),
        }];
        let e = ToolCheck::new(&tools, &ToolChoice::Auto)
            .err()
            .expect("refused");
        assert_eq!(e.param.as_deref(), Some("tools[0].function.parameters"));
    }
}
