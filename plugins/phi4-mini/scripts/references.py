#!/usr/bin/env python3
"""Writes fixtures/reference-microsoft--Phi-4-mini-instruct.jsonl: the official Phi-4-mini
template's renders of the reference conversations (scripts/render_references.py), with one
difference that the adapter needs: the official template reads the tools from the system message
(`message["tools"]`, a JSON text, as the model card shows), and an OpenAI request carries them
beside the messages, so the plain references render no tools at all. Here a conversation with
tools has them put on its system message (an empty one is added when there is none), exactly as
the adapter does, before the official template renders it. Conversations without tools are the
plain references.

Run from the repository root: python3 plugins/phi4-mini/scripts/references.py
"""

import copy
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
STEM = "microsoft--Phi-4-mini-instruct"

spec = importlib.util.spec_from_file_location("render_references", ROOT / "scripts" / "render_references.py")
rr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rr)
decoded_messages = rr.template_messages


def tools_text(tools):
    functions = []
    for tool in tools:
        function = {"name": tool["function"]["name"]}
        if "description" in tool["function"]:
            function["description"] = tool["function"]["description"]
        function["parameters"] = tool["function"].get("parameters", {"type": "object", "properties": {}})
        functions.append(function)
    return json.dumps(functions)


def with_tools_on_system(request):
    messages = decoded_messages(request)
    if request.get("tools"):
        if not messages or messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": ""})
        messages[0]["tools"] = tools_text(request["tools"])
    return messages


def main():
    templates = Path(rr.os.environ.get("PLUGBOARD_TEMPLATES", ROOT.parent / "shared" / "templates"))
    rr.template_messages = with_tools_on_system
    lines = rr.render_template(templates / f"{STEM}.jinja")
    cases = []
    for line in lines:
        case = rr.fixture_case(STEM, line)
        if line["request"].get("tools"):
            case["name"] += " (tools on the system message)"
        cases.append(case)
    out = Path(__file__).resolve().parents[1] / "fixtures" / f"reference-{STEM}.jsonl"
    rr.write_jsonl(out, cases)
    print(f"{out}: {len(cases)} cases")


if __name__ == "__main__":
    main()
