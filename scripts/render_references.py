#!/usr/bin/env python3
"""Render the official Hugging Face chat templates into reference prompts.

Adapters that follow a Hugging Face chat template must render byte for byte what transformers'
`apply_chat_template` renders. This script is the "what transformers renders" side: it reads every
`*.jinja` template from the shared template folder (never copied into this repository), renders a
fixed set of conversations with Python jinja2 set up exactly as transformers sets it up, and writes
the results:

  tests/references/<template file stem>.jsonl   one line per conversation:
    {"name", "request": <OpenAI chat request>, "bos_token", "eos_token", "variables"?: {...},
     "prompt": "..."}  or, when the template refuses the conversation,
    {..., "error": "<message>", "error_type": "raise_exception" | "<Python exception class>"}

`tests/all/templates.rs` renders the same requests through the `jinja` adapter and compares.

Usage:
  scripts/render_references.py [--templates DIR] [--out DIR]
  scripts/render_references.py --fixtures ADAPTER:STEM[,STEM...]

--fixtures writes, instead of the references, the references of the named templates as ordinary
render fixture cases into plugins/ADAPTER/fixtures/reference-<stem>.jsonl, so that an adapter
rendering natively (without the template) proves it renders exactly what the official template
renders. The template variables of a conversation travel in the request's `chat_template_kwargs`.

The template folder defaults to ../shared/templates relative to the repository root; the
environment variable PLUGBOARD_TEMPLATES (or --templates) overrides it.

How transformers renders (transformers/utils/chat_template_utils.py), and so how this does:
- jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with the
  loopcontrols extension (`break`, `continue`); no trailing newline is kept;
- a `tojson` filter that is json.dumps(ensure_ascii=False, indent, separators, sort_keys=False):
  unlike jinja2's own `tojson` it neither sorts keys nor escapes HTML characters;
- globals `raise_exception(message)` (a TemplateError) and `strftime_now(format)`;
- variables: messages, tools (None when the request has none), documents (None),
  add_generation_prompt, the tokenizer's special tokens (here bos_token and eos_token; a token
  the tokenizer lacks is not defined at all), and every extra keyword (our template variables).
- Messages are what an OpenAI-style client sends, except that the arguments of earlier tool calls
  are objects, decoded from their JSON text (what transformers documents and vLLM does).

strftime_now is pinned: every conversation sets the template variable `plugboard_now` (see
PINNED_NOW), and strftime_now formats that moment instead of the clock. The Rust renderer
(plugboard_sdk::template) honours the same variable, so references are reproducible.
"""

import argparse
import copy
import datetime
import json
import os
import sys
from pathlib import Path

import jinja2
import jinja2.ext
import jinja2.sandbox

ROOT = Path(__file__).resolve().parent.parent

# The template variable that pins strftime_now, and the moment every reference is rendered at.
# A day and month below 10 show whether a format pads them.
NOW_VARIABLE = "plugboard_now"
PINNED_NOW = "2025-03-04T09:05:07"

# Each family's usual special tokens (SOURCES.md), by template file stem prefix. None: the
# tokenizer has no such token, so the template does not see the variable at all.
SPECIAL_TOKENS = [
    ("meta-llama--Llama-4", "<|begin_of_text|>", "<|eot|>"),
    ("meta-llama--", "<|begin_of_text|>", "<|eot_id|>"),
    ("mistralai--", "<s>", "</s>"),
    ("NousResearch--", "<|begin_of_text|>", "<|im_end|>"),
    ("Qwen--", None, "<|im_end|>"),
    ("microsoft--Phi-4", "<|endoftext|>", "<|endoftext|>"),
    ("microsoft--", "<s>", "<|endoftext|>"),
    ("deepseek-ai--deepseek-coder", "<｜begin▁of▁sentence｜>", "<|EOT|>"),
    ("deepseek-ai--", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    ("ibm-granite--", "<|end_of_text|>", "<|end_of_text|>"),
    ("google--", "<bos>", "<eos>"),
]


def special_tokens(stem):
    for prefix, bos, eos in SPECIAL_TOKENS:
        if stem.startswith(prefix):
            return bos, eos
    raise SystemExit(f"no special tokens known for the template {stem}: add it to SPECIAL_TOKENS")


# ---------------------------------------------------------------------------------------------
# The conversations. Requests are OpenAI chat requests; tool call ids are 9 alphanumerics because
# Mistral's templates refuse anything else.

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Paris"},
                "unit": {
                    "type": "string",
                    "enum": ["celsius", "fahrenheit"],
                    "description": "The temperature unit",
                },
            },
            "required": ["city"],
        },
    },
}

TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the local time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"tz": {"type": "string", "description": "An IANA time zone name"}},
            "required": ["tz"],
        },
    },
}

SEARCH = {
    "type": "function",
    "function": {
        "name": "search_notes",
        "description": "Search the user's notes",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Words to look for"},
                "limit": {"type": "integer", "description": "At most this many notes"},
                "exact": {"type": "boolean", "description": "Match whole words only"},
            },
            "required": ["query"],
        },
    },
}

TOOLS = [WEATHER, TIME]


def call(call_id, name, arguments):
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
    }


SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
ASK_WEATHER = {"role": "user", "content": "What is the weather in Paris?"}
PARIS_CALL = call("call0abc1", "get_weather", {"city": "Paris", "unit": "celsius"})
PARIS_RESULT = {"role": "tool", "tool_call_id": "call0abc1", "content": '{"temperature": 22}'}

CONVERSATIONS = [
    {
        "name": "user only",
        "request": {"messages": [{"role": "user", "content": "Hello!"}]},
    },
    {
        "name": "system prompt",
        "request": {
            "messages": [SYSTEM, {"role": "user", "content": "What is the capital of France?"}]
        },
    },
    {
        "name": "multi-turn",
        "request": {
            "messages": [
                SYSTEM,
                {"role": "user", "content": "Hi, who are you?"},
                {"role": "assistant", "content": "I am an assistant. How can I help?"},
                {"role": "user", "content": "  Tell me a joke.  "},
            ]
        },
    },
    {
        "name": "tools offered",
        "request": {"messages": [SYSTEM, ASK_WEATHER], "tools": TOOLS},
    },
    {
        "name": "tools offered without system prompt",
        "request": {"messages": [ASK_WEATHER], "tools": [WEATHER, TIME, SEARCH]},
    },
    {
        "name": "tool call with null content",
        "request": {
            "messages": [
                SYSTEM,
                ASK_WEATHER,
                {"role": "assistant", "content": None, "tool_calls": [PARIS_CALL]},
                PARIS_RESULT,
            ],
            "tools": TOOLS,
        },
    },
    {
        "name": "tool call with empty content, then an answer",
        "request": {
            "messages": [
                ASK_WEATHER,
                {"role": "assistant", "content": "", "tool_calls": [PARIS_CALL]},
                PARIS_RESULT,
                {"role": "assistant", "content": "It is 22 °C in Paris."},
                {"role": "user", "content": "Thanks! And the time there?"},
            ],
            "tools": TOOLS,
        },
    },
    {
        "name": "tool call with text",
        "request": {
            "messages": [
                SYSTEM,
                ASK_WEATHER,
                {
                    "role": "assistant",
                    "content": "Let me check the weather.",
                    "tool_calls": [PARIS_CALL],
                },
                PARIS_RESULT,
            ],
            "tools": TOOLS,
        },
    },
    {
        "name": "parallel calls",
        "request": {
            "messages": [
                SYSTEM,
                {"role": "user", "content": "Weather and time in Tokyo, please."},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        call("call0abc2", "get_weather", {"city": "Tokyo"}),
                        call("call0abc3", "get_time", {"tz": "Asia/Tokyo"}),
                    ],
                },
                {"role": "tool", "tool_call_id": "call0abc2", "content": "sunny, 18 degrees"},
                {"role": "tool", "tool_call_id": "call0abc3", "content": "14:05"},
            ],
            "tools": TOOLS,
        },
    },
    {
        "name": "call with empty arguments",
        "request": {
            "messages": [
                {"role": "user", "content": "Search my notes."},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [call("call0abc4", "search_notes", {})],
                },
                {"role": "tool", "tool_call_id": "call0abc4", "content": "[]"},
            ],
            "tools": [SEARCH],
        },
    },
    {
        "name": "escapes, HTML and non-ASCII",
        "request": {
            "messages": [
                {"role": "system", "content": 'Answer in "quotes" & <b>bold</b>.\nLine two\ttab.'},
                {"role": "user", "content": "Zürich, 東京 and 🌧? Back\\slash."},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        call(
                            "call0abc5",
                            "search_notes",
                            {
                                "query": 'café <"naïve"> & {braces} \\ 東京 🌧\n',
                                "limit": 3,
                                "exact": False,
                                "ratio": 0.25,
                                "tags": ["a", None, True, -1.5e-07, 1e21],
                                "nested": {"z": 1, "a": {"empty": {}, "list": []}},
                            },
                        )
                    ],
                },
                {
                    "role": "tool",
                    "tool_call_id": "call0abc5",
                    "content": '{"notes": ["Grüße <3", "a & b"]}',
                },
            ],
            "tools": [SEARCH],
        },
    },
    {
        "name": "reasoning content",
        "request": {
            "messages": [
                {"role": "user", "content": "What is 2 + 2?"},
                {
                    "role": "assistant",
                    "content": "4",
                    "reasoning_content": "Two plus two is four.",
                },
                {"role": "user", "content": "And 3 + 3?"},
            ]
        },
    },
    {
        "name": "thinking disabled",
        "request": {"messages": [{"role": "user", "content": "Quick: 7 * 6?"}]},
        "variables": {"enable_thinking": False, "thinking": False},
    },
    {
        "name": "thinking enabled",
        "request": {"messages": [SYSTEM, {"role": "user", "content": "Quick: 7 * 6?"}]},
        "variables": {"enable_thinking": True, "thinking": True},
    },
    {
        "name": "date string given",
        "request": {"messages": [SYSTEM, ASK_WEATHER], "tools": TOOLS},
        "variables": {"date_string": "01 Jan 2030"},
    },
    {
        "name": "roles not alternating",
        "request": {
            "messages": [
                {"role": "user", "content": "First."},
                {"role": "user", "content": "Second."},
            ]
        },
    },
]


# ---------------------------------------------------------------------------------------------
# transformers' environment


class RaisedByTemplate(jinja2.exceptions.TemplateError):
    """What the template's raise_exception(message) raises (transformers raises TemplateError)."""


def raise_exception(message):
    raise RaisedByTemplate(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers replaces jinja2's tojson, which sorts keys and escapes <, >, & and '.
    return json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def make_environment(now):
    def strftime_now(format):
        return now.strftime(format)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def template_messages(request):
    """The messages as the template sees them: tool call arguments decoded to objects."""
    messages = copy.deepcopy(request["messages"])
    for message in messages:
        for tool_call in message.get("tool_calls") or []:
            arguments = tool_call["function"].get("arguments")
            if isinstance(arguments, str):
                tool_call["function"]["arguments"] = json.loads(arguments)
    return messages


def render(env, template_text, conversation, bos, eos):
    request = conversation["request"]
    variables = {NOW_VARIABLE: PINNED_NOW, **conversation.get("variables", {})}
    context = {
        "messages": template_messages(request),
        "tools": copy.deepcopy(request.get("tools")),
        "documents": None,
        "add_generation_prompt": True,
    }
    if bos is not None:
        context["bos_token"] = bos
    if eos is not None:
        context["eos_token"] = eos
    context.update(variables)
    line = {
        "name": conversation["name"],
        "request": request,
        "bos_token": bos,
        "eos_token": eos,
        "variables": variables,
    }
    try:
        template = env.from_string(template_text)
        line["prompt"] = template.render(**context)
    except RaisedByTemplate as e:
        line["error"] = e.message
        line["error_type"] = "raise_exception"
    except Exception as e:  # noqa: BLE001 - any failure of the template is the reference
        line["error"] = str(e)
        line["error_type"] = type(e).__name__
    return line


def render_template(path):
    bos, eos = special_tokens(path.stem)
    text = path.read_text(encoding="utf-8")
    env = make_environment(datetime.datetime.fromisoformat(PINNED_NOW))
    return [render(env, text, c, bos, eos) for c in CONVERSATIONS]


def write_jsonl(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


def fixture_case(stem, line):
    request = copy.deepcopy(line["request"])
    # The template's own prompt, without plugboard's additions (hermes' several-calls hint).
    request["chat_template_kwargs"] = {**line.get("variables", {}), "plugboard_call_hints": False}
    case = {"name": f"reference {stem}: {line['name']}", "request": request}
    if "prompt" in line:
        case["expect"] = {"prompt": line["prompt"]}
    else:
        case["expect"] = {"error": "invalid_request"}
    return case


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--templates",
        type=Path,
        default=Path(os.environ.get("PLUGBOARD_TEMPLATES", ROOT.parent / "shared" / "templates")),
        help="the folder of official *.jinja templates (default: $PLUGBOARD_TEMPLATES or "
        "../shared/templates beside the repository)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "tests" / "references",
        help="where the references go (default: tests/references)",
    )
    parser.add_argument(
        "--fixtures",
        metavar="ADAPTER:STEM[,STEM...]",
        action="append",
        default=[],
        help="write these templates' references as render fixtures of plugins/ADAPTER "
        "(fixtures/reference-<stem>.jsonl) instead of writing the references; repeatable",
    )
    args = parser.parse_args()

    templates = sorted(args.templates.glob("*.jinja"))
    if not templates:
        sys.exit(f"no *.jinja templates in {args.templates} (set PLUGBOARD_TEMPLATES)")
    by_stem = {t.stem: t for t in templates}

    if args.fixtures:
        for spec in args.fixtures:
            adapter, _, stems = spec.partition(":")
            folder = ROOT / "plugins" / adapter
            if not adapter or not stems:
                sys.exit(f"--fixtures {spec!r}: expected ADAPTER:STEM[,STEM...]")
            if not (folder / "Cargo.toml").is_file():
                sys.exit(f"--fixtures {spec!r}: {folder} is not an adapter folder")
            for stem in stems.split(","):
                if stem not in by_stem:
                    sys.exit(f"unknown template {stem!r}; known: {', '.join(sorted(by_stem))}")
                lines = render_template(by_stem[stem])
                out = folder / "fixtures" / f"reference-{stem}.jsonl"
                write_jsonl(out, [fixture_case(stem, line) for line in lines])
                print(f"{out.relative_to(ROOT)}: {len(lines)} cases")
        return

    total = errors = 0
    for path in templates:
        lines = render_template(path)
        write_jsonl(args.out / f"{path.stem}.jsonl", lines)
        failed = sum("error" in line for line in lines)
        total += len(lines)
        errors += failed
        print(f"{path.stem}: {len(lines)} conversations, {failed} refused")
    print(f"{len(templates)} templates, {total} conversations ({errors} refused) -> {args.out}")


if __name__ == "__main__":
    main()
