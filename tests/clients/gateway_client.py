#!/usr/bin/env python3
"""Asks a plugboard gateway for a tool call with the real `openai` and `ollama` packages,
streamed and not, and prints the call each one received as one JSON report. The Rust test
(tests/all/gateway.rs) starts the gateway and the plugboard behind it, and compares.

Usage: gateway_client.py BASE_URL MODEL
"""

import json
import sys

import ollama
import openai

BASE, MODEL = sys.argv[1], sys.argv[2]
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]
WEATHER = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]
report = {}

client = openai.OpenAI(base_url=f"{BASE}/v1", api_key="unused", max_retries=0, timeout=600)
r = client.chat.completions.create(model=MODEL, messages=ASK, tools=WEATHER, temperature=0)
call = r.choices[0].message.tool_calls[0].function
report["openai"] = {"name": call.name, "arguments": json.loads(call.arguments)}

name, arguments = None, ""
for chunk in client.chat.completions.create(model=MODEL, messages=ASK, tools=WEATHER, temperature=0,
                                            stream=True):
    for c in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
        name = c.function.name or name
        arguments += c.function.arguments or ""
report["openai_stream"] = {"name": name, "arguments": json.loads(arguments)}

o = ollama.Client(host=BASE, timeout=600)
r = o.chat(model=MODEL, messages=ASK, tools=WEATHER, options={"temperature": 0})
call = r.message.tool_calls[0].function
report["ollama"] = {"name": call.name, "arguments": dict(call.arguments)}

calls = []
for part in o.chat(model=MODEL, messages=ASK, tools=WEATHER, options={"temperature": 0}, stream=True):
    calls.extend(part.message.tool_calls or [])
report["ollama_stream"] = {"name": calls[0].function.name, "arguments": dict(calls[0].function.arguments)}

print(json.dumps(report))
