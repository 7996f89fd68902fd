#!/usr/bin/env python3
"""Drives a running plugboard server with the real `ollama` package (/api/chat, with and
without tools, streamed and not) and prints one JSON report.

Usage: ollama_client.py BASE_URL MODEL
"""

import json
import sys

import ollama

BASE, MODEL = sys.argv[1], sys.argv[2]
client = ollama.Client(host=BASE, timeout=600)
report = {}

ASK = [{"role": "user", "content": "What's the weather in Paris?"}]
WEATHER = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]
OPTIONS = {"temperature": 0, "seed": 7}


def calls(message):
    return [{"name": c.function.name, "arguments": dict(c.function.arguments)} for c in (message.tool_calls or [])]


r = client.chat(model=MODEL, messages=[{"role": "user", "content": "Say hello in one short sentence."}],
                options={**OPTIONS, "num_predict": 24})
report["plain"] = {"content": r.message.content, "done": r.done, "done_reason": r.done_reason, "eval_count": r.eval_count}

content, done = "", None
for part in client.chat(model=MODEL, messages=[{"role": "user", "content": "Say hello in one short sentence."}],
                        options={**OPTIONS, "num_predict": 24}, stream=True):
    content += part.message.content or ""
    done = part.done
report["plain_streamed"] = {"content": content, "done": done}

r = client.chat(model=MODEL, messages=ASK, tools=WEATHER, options=OPTIONS)
report["tool"] = {"content": r.message.content, "tool_calls": calls(r.message), "done_reason": r.done_reason}

streamed_calls = []
for part in client.chat(model=MODEL, messages=ASK, tools=WEATHER, options=OPTIONS, stream=True):
    streamed_calls.extend(calls(part.message))
report["tool_streamed"] = {"tool_calls": streamed_calls}

report["tags"] = [m.model for m in client.list().models]
report["version"] = client._request_raw("GET", "/api/version").json()
try:
    client.chat(model="no-such-model", messages=ASK)
    report["unknown_model"] = None
except ollama.ResponseError as e:
    report["unknown_model"] = {"status": e.status_code, "error": e.error}
print(json.dumps(report))
