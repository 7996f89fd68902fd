#!/usr/bin/env python3
"""Tool-call accuracy on the Berkeley Function Calling Leaderboard, plugboard beside llama.cpp.

The data and the scoring are BFCL's own (PyPI's `bfcl-eval`: its data files and its AST
checker); this script only sends each test case to OpenAI-compatible servers through the real
`openai` client and hands the returned `tool_calls` to BFCL's checker. The same fixed sample (per
category, seeded) goes to plugboard and to llama.cpp's `llama-server --jinja` on the same GGUF
with the same threads, one server at a time, in one run. Printed: one table, category x server,
AST accuracy, plus the calls leaked into content, the share of returned calls valid against the
tool's schema, and mean latency. `--out` writes the figures (and each case's verdict) as JSON.

    python3 scripts/bfcl.py --model models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \\
        --llama-server /path/to/llama-server --per-category 20 --out scripts/bfcl/qwen.json

Servers are started here (plugboard from target/release, llama-server from --llama-server) or
reached at --plugboard-url / --llamacpp-url. `--stream` sends streamed requests; `--tool-choice required` asks for
calls in every category that expects them. `--full` runs
every case of each category. Installing: `pip install --no-deps bfcl-eval` (the checker needs
none of the package's dependencies: it is imported without the leaderboard's model registry,
which would pull every vendor's client; see `checker()`), plus `openai` and `jsonschema`.

Scoring follows BFCL's function-calling (FC) mode for OpenAI-compatible endpoints: tool names
with `.` are sent with `_` (OpenAI's name rule) and the checker is told so; a case of the
`irrelevance` categories is right when no call comes back; any other case is right when BFCL's
AST checker accepts the calls.
"""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import types
import urllib.request
from collections import defaultdict
from pathlib import Path

CATEGORIES = [
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "irrelevance",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_irrelevance",
]
NON_LIVE = CATEGORIES[:5]
ROOT = Path(__file__).resolve().parent.parent


def checker():
    """BFCL's AST checker. Its module imports the leaderboard's model registry only to ask
    whether a model's tool names had `.` replaced by `_`; that registry imports every vendor's
    API client. A registry that answers "yes" for every model (true of OpenAI-compatible FC
    endpoints) stands in for it, so the checker itself is BFCL's, unchanged."""
    registry = types.ModuleType("bfcl_eval.constants.model_config")
    registry.MODEL_CONFIG_MAPPING = defaultdict(
        lambda: types.SimpleNamespace(underscore_to_dot=True)
    )
    sys.modules.setdefault("bfcl_eval.constants.model_config", registry)
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker

    return lambda functions, output, answer, category: ast_checker(
        functions, output, answer, Language.PYTHON, category, "openai-compatible"
    )


def data_dir():
    import bfcl_eval

    return Path(bfcl_eval.__file__).parent / "data"


def load(category):
    """The category's cases and their answers (none for irrelevance), by id."""
    def lines(path):
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    cases = lines(data_dir() / f"BFCL_v4_{category}.json")
    answers = {}
    answer_file = data_dir() / "possible_answer" / f"BFCL_v4_{category}.json"
    if answer_file.exists():
        answers = {a["id"]: a["ground_truth"] for a in lines(answer_file)}
    return cases, answers


# BFCL's parameter types as JSON Schema types (its own table, `GORILLA_TO_OPENAPI`).
def json_type(name):
    from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI

    return GORILLA_TO_OPENAPI.get(name, "string")


def to_schema(schema):
    """A BFCL parameter schema as standard JSON Schema: BFCL's type names (`dict`, `float`,
    `tuple`, `any`) mapped, nested properties and items too."""
    schema = dict(schema)
    schema["type"] = json_type(schema.get("type", "string"))
    if isinstance(schema.get("properties"), dict):
        schema["properties"] = {k: to_schema(v) for k, v in schema["properties"].items()}
    if isinstance(schema.get("items"), dict):
        schema["items"] = to_schema(schema["items"])
    return schema


def openai_name(name):
    return re.sub(r"\.", "_", name)


def to_tools(functions):
    tools = []
    for f in functions:
        parameters = to_schema(f.get("parameters", {"type": "dict", "properties": {}}))
        parameters["type"] = "object"
        parameters.setdefault("properties", {})
        tools.append(
            {
                "type": "function",
                "function": {
                    "name": openai_name(f["name"]),
                    "description": f.get("description", ""),
                    "parameters": parameters,
                },
            }
        )
    return tools


def sample(category, per_category, seed, full):
    cases, answers = load(category)
    if not full and per_category < len(cases):
        cases = random.Random(f"{seed}:{category}").sample(cases, per_category)
    return cases, answers


def ask(client, model, case, tools, stream, max_tokens, tool_choice):
    """One chat completion: (calls as [(name, arguments text)], content, seconds)."""
    # Single-turn categories: the first turn's messages.
    messages = case["question"][0]
    started = time.monotonic()
    request = dict(
        model=model,
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        temperature=0,
        max_tokens=max_tokens,
    )
    if not stream:
        reply = client.chat.completions.create(**request)
        message = reply.choices[0].message
        calls = [(c.function.name, c.function.arguments) for c in message.tool_calls or []]
        return calls, message.content or "", time.monotonic() - started
    calls, content = {}, []
    for chunk in client.chat.completions.create(stream=True, **request):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        if delta.content:
            content.append(delta.content)
        for call in delta.tool_calls or []:
            entry = calls.setdefault(call.index, ["", ""])
            if call.function and call.function.name:
                entry[0] += call.function.name
            if call.function and call.function.arguments:
                entry[1] += call.function.arguments
    ordered = [tuple(calls[i]) for i in sorted(calls)]
    return ordered, "".join(content), time.monotonic() - started


def leaked(content, tools):
    """Whether the content carries a call the server did not return: a JSON object naming an
    offered tool, or a tool-call tag."""
    names = "|".join(re.escape(t["function"]["name"]) for t in tools)
    return bool(
        re.search(r'"name"\s*:\s*"(?:%s)"' % names, content)
        or re.search(r"<tool_call>|\[TOOL_CALLS\]|<\|python_tag\|>", content)
    )


def run_server_cases(
    name, url, model, cases_by_category, check, stream, max_tokens, tool_choice, log
):
    import jsonschema
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="none", timeout=600, max_retries=0)
    figures, verdicts = {}, {}
    for category, (cases, answers) in cases_by_category.items():
        right = leaks = calls_seen = valid = 0
        latency = 0.0
        # `required` asks for a call: in the irrelevance categories the right answer is none.
        choice = "auto" if "irrelevance" in category else tool_choice
        for case in cases:
            tools = to_tools(case["function"])
            schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
            try:
                calls, content, seconds = ask(
                    client, model, case, tools, stream, max_tokens, choice
                )
                error = None
            except Exception as e:  # a server error is a wrong answer, and is reported
                calls, content, seconds, error = [], "", 0.0, f"{type(e).__name__}: {e}"
            latency += seconds
            leaks += leaked(content, tools)
            output = []
            for call_name, arguments in calls:
                calls_seen += 1
                try:
                    args = json.loads(arguments or "{}")
                except ValueError:
                    args = None
                if isinstance(args, dict) and call_name in schemas:
                    try:
                        jsonschema.validate(args, schemas[call_name])
                        valid += 1
                    except jsonschema.ValidationError:
                        pass
                output.append({call_name: args if isinstance(args, dict) else {}})
            if "irrelevance" in category:
                ok = not calls and error is None
            elif not output:
                ok = False
            else:
                try:
                    ok = check(case["function"], output, answers[case["id"]], category)["valid"]
                except Exception as e:  # the checker refuses what it cannot read
                    ok, error = False, f"checker: {e}"
            right += ok
            verdicts[case["id"]] = {"ok": bool(ok), "calls": output, "error": error}
            log(f"{name} {case['id']}: {'ok' if ok else 'wrong'} {output if output else content[:80]!r}")
        figures[category] = {
            "cases": len(cases),
            "accuracy": right / max(len(cases), 1),
            "leaked": leaks,
            "calls": calls_seen,
            "schema_valid": valid / calls_seen if calls_seen else None,
            "mean_latency_s": latency / max(len(cases), 1),
        }
    return figures, verdicts


def wait_ready(url, process, what, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            sys.exit(f"{what} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=5) as r:
                return json.load(r)
        except Exception:
            time.sleep(1)
    sys.exit(f"{what} did not answer at {url}")


def start(cmd, url, what, log_file):
    out = open(log_file, "w")
    process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    models = wait_ready(url, process, what)
    return process, models


def stop(process):
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def table(results, servers):
    cols = " | ".join(f"{s:>10}" for s in servers)
    lines = [f"| {'category':18} | {cols} |", "|" + "---|" * (len(servers) + 1)]
    for category in CATEGORIES:
        if category not in results[servers[0]]:
            continue
        cells = " | ".join(
            f"{results[s][category]['accuracy'] * 100:9.0f}%" for s in servers
        )
        lines.append(f"| {category:18} | {cells} |")
    for label, cats in [("non-live overall", NON_LIVE), ("all overall", CATEGORIES)]:
        cells = []
        for s in servers:
            present = [c for c in cats if c in results[s]]
            n = sum(results[s][c]["cases"] for c in present)
            right = sum(results[s][c]["accuracy"] * results[s][c]["cases"] for c in present)
            cells.append(f"{right / max(n, 1) * 100:9.1f}%")
        lines.append(f"| {label:18} | {' | '.join(cells)} |")
    for label, key in [("calls leaked", "leaked")]:
        cells = " | ".join(
            f"{sum(results[s][c][key] for c in results[s]):10d}" for s in servers
        )
        lines.append(f"| {label:18} | {cells} |")
    cells = []
    for s in servers:
        calls = sum(results[s][c]["calls"] for c in results[s])
        valid = sum(
            (results[s][c]["schema_valid"] or 0) * results[s][c]["calls"] for c in results[s]
        )
        cells.append(f"{valid / calls * 100:9.1f}%" if calls else f"{'-':>10}")
    lines.append(f"| {'schema-valid calls':18} | {' | '.join(cells)} |")
    cells = []
    for s in servers:
        n = sum(results[s][c]["cases"] for c in results[s])
        total = sum(results[s][c]["mean_latency_s"] * results[s][c]["cases"] for c in results[s])
        cells.append(f"{total / max(n, 1):9.2f}s")
    lines.append(f"| {'mean latency':18} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    p.add_argument("--per-category", type=int, default=20)
    p.add_argument("--full", action="store_true", help="every case of each category")
    p.add_argument("--seed", default="plugboard")
    p.add_argument("--categories", nargs="*", default=CATEGORIES)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--stream", action="store_true")
    p.add_argument(
        "--tool-choice",
        choices=["auto", "required"],
        default="auto",
        help="tool_choice of the categories that expect calls (irrelevance is always auto)",
    )
    p.add_argument("--max-tokens", type=int, default=384)
    p.add_argument("--plugboard-url", help="a running plugboard (else one is started)")
    p.add_argument("--plugboard-bin", default=str(ROOT / "target/release/plugboard"))
    p.add_argument("--plugboard-args", default="", help="extra `plugboard serve` arguments")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="also run a plugboard served with these extra arguments (e.g. another --plugins)",
    )
    p.add_argument(
        "--plugboard-model", help="model id or file plugboard serves (default: --model's file)"
    )
    p.add_argument("--llamacpp-url", help="a running llama-server")
    p.add_argument("--llama-server", help="llama-server binary to start (with --jinja)")
    p.add_argument("--no-llamacpp", action="store_true")
    p.add_argument("--port", type=int, default=18431, help="first port of the servers started here")
    p.add_argument("--out", help="write figures and verdicts as JSON here")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()

    log = (lambda *a: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    check = checker()
    cases = {c: sample(c, args.per_category, args.seed, args.full) for c in args.categories}
    model_path = str(Path(args.model).resolve())

    servers = []
    for i, (name, extra) in enumerate(
        [("plugboard", args.plugboard_args)] + [v.split("=", 1) for v in args.variant]
    ):
        port = args.port + 10 * (i + 1)
        url = args.plugboard_url if i == 0 else None
        servers.append((name, url, [
            args.plugboard_bin, "serve", "--model", args.plugboard_model or model_path,
            "--port", str(port), "--threads", str(args.threads), *extra.split(),
        ], f"http://127.0.0.1:{port}"))
    if not args.no_llamacpp:
        if not (args.llamacpp_url or args.llama_server):
            sys.exit("give --llama-server BIN or --llamacpp-url URL (or --no-llamacpp)")
        servers.append(("llama.cpp", args.llamacpp_url, [
            args.llama_server, "-m", model_path, "--jinja", "--port", str(args.port),
            "-t", str(args.threads), "-tb", str(args.threads), "-c", "8192", "-np", "1",
        ], f"http://127.0.0.1:{args.port}"))

    results, verdicts = {}, {}
    for name, url, cmd, own_url in servers:
        process = None
        if url is None:
            url = own_url
            process, models = start(cmd, url, name, f"/tmp/bfcl-{name}.log")
        else:
            models = wait_ready(url, None, name)
        ids = [m["id"] for m in models.get("data", [])]
        stem = Path(model_path).stem
        wanted = args.plugboard_model if name != "llama.cpp" and args.plugboard_model else stem
        model = next((i for i in ids if wanted in i or i in wanted), ids[0] if ids else wanted)
        try:
            results[name], verdicts[name] = run_server_cases(
                name, url, model, cases, check, args.stream, args.max_tokens,
                args.tool_choice, log,
            )
        finally:
            stop(process)

    names = [name for name, *_ in servers]
    print(table(results, names))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(
                {
                    "model": Path(model_path).name,
                    "per_category": None if args.full else args.per_category,
                    "seed": args.seed,
                    "threads": args.threads,
                    "stream": args.stream,
                    "tool_choice": args.tool_choice,
                    "bfcl_eval": __import__("importlib.metadata").metadata.version("bfcl-eval"),
                    "date": time.strftime("%Y-%m-%d"),
                    "results": results,
                    "verdicts": verdicts,
                },
                f,
                indent=1,
                sort_keys=True,
            )


if __name__ == "__main__":
    main()
