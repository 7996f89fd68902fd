#!/usr/bin/env python3
"""Drives a running plugboard server with the real `openai` package and prints one JSON object
with what each scenario observed. The Rust test (tests/all/server.rs) starts the server and
asserts on this report.

Usage: openai_client.py BASE_URL MODEL
"""

import json
import sys
import urllib.error
import urllib.request

import openai

BASE, MODEL = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{BASE}/v1", api_key="unused", max_retries=0, timeout=600)

WEATHER = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city"}},
            "required": ["city"],
        },
    },
}]
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]
report = {}


def calls_of(message):
    return [{"id": c.id, "name": c.function.name, "arguments": json.loads(c.function.arguments)}
            for c in (message.tool_calls or [])]


def fold(stream):
    """Folds streamed chunks into a message the way OpenAI's docs describe."""
    content, calls, finish, usage, roles = "", {}, None, None, []
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            delta = choice.delta
            if delta.role:
                roles.append(delta.role)
            content += delta.content or ""
            for tc in delta.tool_calls or []:
                call = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                if tc.id:
                    call["id"] = tc.id
                if tc.function and tc.function.name:
                    call["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    call["arguments"] += tc.function.arguments
            finish = choice.finish_reason or finish
    folded = [{"id": c["id"], "name": c["name"], "arguments": json.loads(c["arguments"])}
              for _, c in sorted(calls.items())]
    return {"content": content or None, "tool_calls": folded, "finish_reason": finish, "usage": usage, "roles": roles}


# Plain chat, whole and streamed.
r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hello in one short sentence."}],
                                   temperature=0, max_tokens=24)
report["plain"] = {"content": r.choices[0].message.content, "finish_reason": r.choices[0].finish_reason,
                   "usage": r.usage.model_dump()}
s = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hello in one short sentence."}],
                                   temperature=0, max_tokens=24, stream=True, stream_options={"include_usage": True})
report["plain_streamed"] = fold(s)

# A tool request, whole and streamed with the same seed.
r = client.chat.completions.create(model=MODEL, messages=ASK, tools=WEATHER, temperature=0, seed=42)
message = r.choices[0].message
report["tool"] = {"content": message.content, "tool_calls": calls_of(message), "finish_reason": r.choices[0].finish_reason}
s = client.chat.completions.create(model=MODEL, messages=ASK, tools=WEATHER, temperature=0, seed=42, stream=True)
report["tool_streamed"] = fold(s)

# The follow-up turn with the tool's result gets a text answer.
if report["tool"]["tool_calls"]:
    call = r.choices[0].message.tool_calls[0]
    follow = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"city": "Paris", "temperature_c": 22, "sky": "sunny"})},
    ]
    r = client.chat.completions.create(model=MODEL, messages=follow, tools=WEATHER, temperature=0, max_tokens=48)
    report["follow_up"] = {"content": r.choices[0].message.content, "tool_calls": calls_of(r.choices[0].message),
                           "finish_reason": r.choices[0].finish_reason}


# Errors keep OpenAI's shape and status.
def error_of(fn):
    try:
        fn()
        return None
    except openai.APIStatusError as e:
        return {"status": e.status_code, "body": e.body}


report["unknown_model"] = error_of(lambda: client.chat.completions.create(model="no-such-model", messages=ASK))
report["wrong_type"] = error_of(lambda: client.chat.completions.create(model=MODEL, messages=ASK, temperature="hot"))
report["bad_role"] = error_of(lambda: client.chat.completions.create(model=MODEL, messages=[{"role": "robot", "content": "x"}]))
bad_schema = [{"type": "function", "function": {"name": "f", "parameters": {"type": "nonsense"}}}]
report["invalid_tool_schema"] = error_of(lambda: client.chat.completions.create(model=MODEL, messages=ASK, tools=bad_schema))


def raw_post(path, body):
    request = urllib.request.Request(f"{BASE}{path}", data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return {"status": response.status, "body": json.loads(response.read())}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": json.loads(e.read())}


report["malformed_json"] = raw_post("/v1/chat/completions", b'{"model": "x", "messages": [')
# Four times the limit: a server that answered before reading the rest would reset the
# connection while the client is still sending, and the client would never see the 413.
report["oversized"] = raw_post("/v1/chat/completions", b'{"model": "x", "pad": "' + b"x" * (16 << 20) + b'"}')

# The server still answers after all of that.
report["models"] = [m.id for m in client.models.list().data]
print(json.dumps(report))
