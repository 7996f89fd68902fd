#!/usr/bin/env python3
"""Does the model answer from a tool's result, or call again? Through the real `openai` client.

    python3 tests/clients/after_results_client.py BASE_URL [--cases N] [--max-tokens N] MODEL...

Each conversation is a question, the assistant's call(s) and the tool's result(s); the reply
is greedy. Counted per model: replies that make no call and hold no call-shaped JSON
(`answered`), and of those, replies that quote the result (`quoting`: a number or word of
three letters or more from it). Serve the same file under two ids, one with
`answer_after_results = false`, to see what the rendering changes (README, "after results").
Each reply goes to stderr; the counts, by model, to stdout as JSON.
"""

import argparse

import json
import re
import sys

import openai

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "Current time in a timezone",
     "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}},
]
CASES = [
    ("What's the weather in Paris?", [("get_weather", {"city": "Paris"}, "18 C, light rain")]),
    ("What time is it in Tokyo?", [("get_time", {"tz": "Asia/Tokyo"}, "21:04")]),
    ("Weather in Oslo and in Rome?", [("get_weather", {"city": "Oslo"}, "-2 C, snow"),
                                      ("get_weather", {"city": "Rome"}, "15 C, sunny")]),
    ("Is it raining in London?", [("get_weather", {"city": "London"}, "12 C, heavy rain")]),
    ("What's the temperature in Berlin in Fahrenheit?", [("get_weather", {"city": "Berlin"}, "10 C, cloudy")]),
    ("Tell me the time in New York.", [("get_time", {"tz": "America/New_York"}, "08:15")]),
    ("How is the weather in Madrid today?", [("get_weather", {"city": "Madrid"}, "25 C, clear")]),
    ("Current time in London, please.", [("get_time", {"tz": "Europe/London"}, "13:37")]),
    ("Do I need sunglasses in Athens?", [("get_weather", {"city": "Athens"}, "31 C, cloudless")]),
    ("Is it morning in Sydney?", [("get_time", {"tz": "Australia/Sydney"}, "06:30")]),
]


def conversation(question, calls):
    messages = [
        {"role": "user", "content": question},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"c{i}", "type": "function",
             "function": {"name": name, "arguments": json.dumps(args)}}
            for i, (name, args, _) in enumerate(calls)]},
    ]
    messages += [{"role": "tool", "tool_call_id": f"c{i}", "content": result}
                 for i, (_, _, result) in enumerate(calls)]
    return messages


def quotes(reply, calls):
    words = set()
    for _, _, result in calls:
        for word in re.findall(r"-?\d+|[A-Za-z]{3,}", result):
            words.add(word.lstrip("0") or "0")
    return any(re.search(r"(?<![\w-])0*" + re.escape(w) + r"(?!\w)", reply, re.I) for w in words)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("base")
    p.add_argument("models", nargs="+")
    p.add_argument("--cases", type=int, default=len(CASES))
    p.add_argument("--max-tokens", type=int, default=120)
    args = p.parse_args()
    client = openai.OpenAI(base_url=args.base + "/v1", api_key="none", max_retries=0, timeout=600)
    cases = CASES[: args.cases]
    counts = {}
    for model in args.models:
        answered = quoting = 0
        for question, calls in cases:
            reply = client.chat.completions.create(
                model=model, messages=conversation(question, calls), tools=TOOLS,
                temperature=0, max_tokens=args.max_tokens,
            ).choices[0].message
            text = reply.content or ""
            ok = not reply.tool_calls and text.strip() != "" and '"name"' not in text
            answered += ok
            quoting += ok and quotes(text, calls)
            print(f"{model}: {'answer' if ok else 'call  '} {question!r} -> "
                  f"{[c.function.name for c in reply.tool_calls or []]} {text[:90]!r}",
                  file=sys.stderr)
        print(f"{model}: answered {answered}/{len(cases)}, quoting the result "
              f"{quoting}/{len(cases)}", file=sys.stderr)
        counts[model] = {"cases": len(cases), "answered": answered, "quoting": quoting}
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
