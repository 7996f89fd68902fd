"""Schemathesis hooks for the API fuzz run (tests/all/openapi.rs).

Schemathesis's `positive_data_acceptance` fails any 400 to a request its schema allows. A few
of plugboard's rules cannot be written in a JSON Schema: a `tool_choice` must name one of the
request's tools, tool names must differ, a tool's `parameters` must be a valid JSON Schema, a
prompt must fit the model's context and have a token, token ids must be in the model's
vocabulary, a local file is not the store's to pull or delete, a copy's name must be free. This
check replaces that one: a schema-valid request may be refused with 400 only for one of those
rules, named by its error `code` (OpenAI's shape) or, in Ollama's shape (which has no code), by
its whole message. Any other 400, such as a field the schema allows but the server cannot read,
fails the run.
"""

import re

import schemathesis

# The codes of the rules beyond the schema (see host/src/chat.rs, limits.rs, toolcalls.rs, turn/prepare.rs, api/error.rs).
STATED_RULES = {
    "tool_not_offered",
    "no_tools_offered",
    "duplicate_tool_name",
    "invalid_tool_schema",
    "context_length_exceeded",
    "empty_prompt",
    "token_out_of_vocabulary",
    "tools_too_large",
    "model_not_pullable",
    "model_is_remote",
    # The adapter's template refuses the conversation (e.g. roles out of order): its rule.
    "template_error",
    # A name the hub cannot have (`a/b:`), which only the hub's naming rules decide.
    "model_download_failed",
}

# The same rules in Ollama's shape, by their whole messages.
OLLAMA_RULES = [
    re.compile(pattern, re.DOTALL)
    for pattern in [
        r"the tool name '.*' appears twice",
        r"the parameters of tool '.*' are not a valid JSON Schema: .*",
        r"the prompt has \d+ tokens; the context holds \d+",
        r"adapter \S+ \S+: .*",
        r"model '.*' is a local file, not a pulled one: plugboard does not delete it",
        r"model '.*' is served by a backend",
        r"model '.*' is not a Hugging Face file: there is nothing to pull",
        r"config /api/copy: the name '.*' is taken",
    ]
]


def _refused_for_a_stated_rule(body):
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return error.get("code") in STATED_RULES
    if isinstance(error, str):
        return any(rule.fullmatch(error) for rule in OLLAMA_RULES)
    return False


@schemathesis.check
def valid_data_accepted_or_refused_for_a_stated_rule(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    if response.status_code != 400:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not _refused_for_a_stated_rule(body):
        raise AssertionError(
            f"a request valid by the description was refused for no rule beyond it: "
            f"{response.text[:500]}"
        )
    return None
