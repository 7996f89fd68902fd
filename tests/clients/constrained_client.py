#!/usr/bin/env python3
"""Constrained decoding through the server, seen by the real `openai` package: with
`tool_choice: required` every reply is a call (exactly one with `parallel_tool_calls: false`,
two where the prompt asks for two) whose arguments are valid against the tool's schema (checked here with the `jsonschema` package, not by the server), also for chit-chat that
would not call a tool; a named tool is called when the prompt asks for another; a schema
stress set is always valid; streaming equals non-streaming; `auto` without a call is the same
text as unconstrained; `response_format: json_schema` gives valid JSON. Prints one JSON report
for tests/all/server.rs.

Usage: constrained_client.py BASE_URL MODEL [SEEDS] [PROMPTS]
(SEEDS sampled runs per prompt beside the greedy one, 1 by default; PROMPTS of the 40, 10 by
default: the first 6 ask for a tool, the last 4 are chit-chat; all 40 with PROMPTS=40.)
"""

import json
import os
import sys
import urllib.request

import jsonschema
import openai

BASE, MODEL = sys.argv[1], sys.argv[2]
SEEDS = int(sys.argv[3]) if len(sys.argv) > 3 else 1
COUNT = int(sys.argv[4]) if len(sys.argv) > 4 else 10
client = openai.OpenAI(base_url=f"{BASE}/v1", api_key="unused", max_retries=0, timeout=600)


def tool(name, description, parameters):
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


TOOLS = [
    tool("get_weather", "Current weather in a city", {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"]}),
    tool("get_time", "Current time in a time zone", {
        "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}),
]
STRESS = [tool("book_table", "Book a restaurant table", {
    "type": "object",
    "properties": {
        "restaurant": {"type": "string", "pattern": "^[A-Z][a-z]+$"},
        "party": {"type": "integer", "minimum": 1, "maximum": 12},
        "seating": {"type": "string", "enum": ["inside", "terrace", "bar"]},
        "when": {
            "type": "object",
            "properties": {"day": {"type": "string", "enum": ["mon", "tue", "wed", "thu", "fri"]},
                           "hour": {"type": "integer", "minimum": 11, "maximum": 22}},
            "required": ["day", "hour"],
            "additionalProperties": False,
        },
        "requests": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 2},
        "phone": {"anyOf": [{"type": "string", "pattern": "^[0-9]{6,10}$"}, {"type": "null"}]},
    },
    "required": ["restaurant", "party", "seating", "when", "requests", "phone"],
    "additionalProperties": False,
})]

ASKING = [
    "What's the weather in Paris?",
    "Is it raining in Tokyo right now? Use celsius.",
    "What time is it in Europe/Berlin?",
    "I'm flying to New York; what's the local time there?",
    "How warm is it in Cairo today?",
    "Should I take an umbrella in London?",
    "Temperature in Reykjavik in fahrenheit, please.",
    "What's the current time in Asia/Tokyo?",
    "Is it sunny in Madrid?",
    "Tell me the time in UTC.",
    "How cold is it in Oslo right now?",
    "What's the weather like in Sydney?",
    "Give me the local time in America/Los_Angeles.",
    "Weather report for Nairobi.",
    "Is it snowing in Montreal?",
    "What time is it in India (Asia/Kolkata)?",
    "Check the weather in Buenos Aires in celsius.",
    "Current conditions in Seattle?",
    "What hour is it in Europe/Lisbon?",
    "How hot is Dubai today?",
    "Do I need a coat in Berlin?",
    "Time check for Australia/Sydney, please.",
    "What's it like outside in Rome?",
    "Humidity and temperature in Singapore?",
    "Local time in Africa/Lagos?",
    "Weather in Mexico City, fahrenheit.",
    "What's the time in Europe/Moscow?",
    "Forecast for Amsterdam right now?",
    "Is it windy in Chicago?",
    "What time is it in Pacific/Auckland?",
]
CHITCHAT = [
    "Hi! How are you today?",
    "Tell me a joke about cats.",
    "Write a haiku about autumn.",
    "What is 17 times 23?",
    "Thanks, that's all for now.",
    "Who wrote Pride and Prejudice?",
    "Explain recursion in one sentence.",
    "Translate 'good morning' into Spanish.",
    "What's your favourite colour?",
    "Give me a synonym for 'happy'.",
]
# The suite's default: 6 asking, 4 chit-chat; 40 prompts: all of them.
PROMPTS = ASKING[:COUNT * 3 // 5 if COUNT < 40 else 30] + CHITCHAT[:COUNT - (COUNT * 3 // 5 if COUNT < 40 else 30)]


def schema_of(tools, name):
    return next(t["function"]["parameters"] for t in tools if t["function"]["name"] == name)


def check_calls(message, tools):
    """(number of calls, every call valid against its tool's schema, names)."""
    calls = message.tool_calls or []
    valid = True
    for call in calls:
        try:
            jsonschema.validate(json.loads(call.function.arguments), schema_of(tools, call.function.name))
        except Exception:  # noqa: BLE001 - any failure makes the call invalid
            valid = False
    return len(calls), valid, [c.function.name for c in calls]


# PLUGBOARD_UNCONSTRAINED=1: the same requests with constrained decoding off, as a baseline.
BASELINE = os.environ.get("PLUGBOARD_UNCONSTRAINED") == "1"


def ask(prompt, tools, tool_choice, temperature, seed, **extra):
    if BASELINE:
        extra.setdefault("extra_body", {"constrained": False})
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], tools=tools, tool_choice=tool_choice,
        temperature=temperature, seed=seed, max_tokens=120, **extra)


class Refused:
    """A reply the server refused (422: no valid call), as a message without calls."""

    def __init__(self, error):
        self.tool_calls, self.content = [], None
        self.finish_reason = f"error {error.status_code}"


def ask_or_refused(*args, **kwargs):
    try:
        r = ask(*args, **kwargs)
        return r.choices[0].message, r.choices[0].finish_reason
    except openai.APIStatusError as e:
        refused = Refused(e)
        return refused, refused.finish_reason


report = {"required": [], "stress": []}
settings = [(0.0, None)] + [(0.7, seed) for seed in range(1, SEEDS + 1)]
for prompt in PROMPTS:
    for temperature, seed in settings:
        # One call each: forced to call on chit-chat with parallel calls allowed, the 0.5B model
        # goes on listing calls (other cities, other zones) until the token limit.
        message, finish = ask_or_refused(prompt, TOOLS, "required", temperature, seed, parallel_tool_calls=False)
        n, valid, names = check_calls(message, TOOLS)
        report["required"].append({"prompt": prompt, "asks": prompt in ASKING, "temperature": temperature, "seed": seed, "calls": n,
                                   "valid": valid, "names": names, "finish": finish})

for seed in range(1, (3 if COUNT < 40 else 30) + 1):
    message, _ = ask_or_refused("Book a table for four at Luigi on Friday at 8pm, on the terrace.", STRESS,
                                "required", 0.7, seed, parallel_tool_calls=False)
    n, valid, _ = check_calls(message, STRESS)
    report["stress"].append({"seed": seed, "calls": n, "valid": valid,
                             "arguments": [c.function.arguments for c in message.tool_calls or []]})
if BASELINE:
    print(json.dumps(report))
    sys.exit(0)


# Parallel calls where the prompt asks for two.
r = ask("What's the weather in Paris and in London?", TOOLS, "required", 0.0, None)
report["parallel"] = [check_calls(r.choices[0].message, TOOLS)[0], r.choices[0].finish_reason]

# A named tool is called even when the prompt asks for another.
r = ask("What's the weather in Paris?", TOOLS, {"type": "function", "function": {"name": "get_time"}}, 0.0, None)
report["named"] = check_calls(r.choices[0].message, TOOLS)[2]

# Streaming gives what non-streaming gives.
whole = ask(PROMPTS[0], TOOLS, "required", 0.0, None).choices[0].message
stream = client.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": PROMPTS[0]}], tools=TOOLS, tool_choice="required",
    temperature=0.0, max_tokens=120, stream=True)
streamed = {}
for chunk in stream:
    for choice in chunk.choices:
        for tc in choice.delta.tool_calls or []:
            call = streamed.setdefault(tc.index, {"name": "", "arguments": ""})
            call["name"] += (tc.function.name or "") if tc.function else ""
            call["arguments"] += (tc.function.arguments or "") if tc.function else ""
report["stream_equal"] = [[c["name"], json.loads(c["arguments"])] for c in streamed.values()] == \
    [[c.function.name, json.loads(c.function.arguments)] for c in whole.tool_calls or []]

# `auto` with no call: the same text as without a constraint.
auto = ask("Write one sentence about the sea.", TOOLS, "auto", 0.0, None).choices[0].message
free = ask("Write one sentence about the sea.", TOOLS, "auto", 0.0, None,
           extra_body={"constrained": False}).choices[0].message
report["auto_same"] = (auto.content, len(auto.tool_calls or [])) == (free.content, len(free.tool_calls or []))

# Structured output.
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
          "required": ["name", "age"], "additionalProperties": False}
r = client.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "Tell me about a famous scientist."}], temperature=0.0,
    max_tokens=80, response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}})
try:
    jsonschema.validate(json.loads(r.choices[0].message.content), PERSON)
    report["json_schema_valid"] = True
except Exception as e:  # noqa: BLE001
    report["json_schema_valid"] = f"{e}: {r.choices[0].message.content!r}"

with urllib.request.urlopen(f"{BASE}/metrics", timeout=60) as m:
    report["fallbacks"] = [line for line in m.read().decode().splitlines()
                           if line.startswith("plugboard_grammar_fallbacks_total")]
print(json.dumps(report))
