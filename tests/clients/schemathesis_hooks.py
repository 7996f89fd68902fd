"""Schemathesis hooks for the API fuzz run (tests/all/openapi.rs).

Schemathesis's `positive_data_acceptance` fails any 400 to a request its schema allows. Some of
plugboard's rules cannot be written in a JSON Schema: a `tool_choice` must name one of the
request's tools, tool names must differ, a prompt must fit the model's context, token ids must
be in the model's vocabulary, a prompt must have a token, a local file is not the store's to pull or delete. This check
replaces that one: a schema-valid request may be refused with 400 only for one of those rules,
recognised by the error's `param`/`code` (OpenAI's shape) or message (Ollama's, which has
neither). Anything else, such as a field the schema allows but the server cannot read, fails.
"""

import re

import schemathesis

# OpenAI's shape: the fields whose rules go beyond their schema, and the codes of such rules.
SEMANTIC_PARAMS = {"tool_choice", "tools", "tokens", "destination"}
SEMANTIC_CODES = {
    "context_length_exceeded",
    "template_error",
    "model_not_pullable",
    "model_is_remote",
    "tools_too_large",
    "invalid_prompt",
}

# Ollama's shape: the same rules, by their messages.
SEMANTIC_MESSAGES = re.compile(
    r"tool_choice|appears twice|context|is a local file|is served by a backend"
    r"|is not a Hugging Face file|already|outside the vocabulary|template"
)


def _refused_for_a_stated_rule(body):
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return error.get("param") in SEMANTIC_PARAMS or error.get("code") in SEMANTIC_CODES
    if isinstance(error, str):
        return bool(SEMANTIC_MESSAGES.search(error))
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
