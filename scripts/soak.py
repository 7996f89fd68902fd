#!/usr/bin/env python3
"""Soak: a real `plugboard serve` under sustained mixed load while its adapters are replaced
and a second model loads and unloads. Loopback only; bounded in clients and time.

Each client loops over a mix of requests for --seconds: streamed and whole chat completions,
tool calls, Ollama chat, completions from token ids, streams cancelled mid-way, oversized and
malformed bodies. Meanwhile the tool-use adapter's .wasm is replaced every --swap-every seconds
(a good build, then a broken file that must be refused while the good one keeps serving), and
the Gemma test model is loaded and unloaded.

Reported (one JSON object on stdout): requests by kind and outcome, failures (anything but the
documented answers: 2xx, 400/413/422 for bad bodies, 429 and 503 under load), p50/p99 time to
first token of streamed chats, the server's RSS and threads after warm-up and at the end, and
the in-flight gauge once the clients stop. Exit status 1 when any check fails.

Usage: scripts/soak.py [--binary target/release/plugboard] [--clients 16] [--seconds 60]
  (CI runs it small through tests/all/soak.rs; by hand: --clients 32 --seconds 600)
"""

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
QWEN = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
# Answers that are not failures, by kind of request.
EXPECTED = {
    "malformed": {400},
    "oversized": {413},
    "wrong_types": {400},
}
LOAD_STATUSES = {429, 503}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default=str(ROOT / "target/release/plugboard"))
    p.add_argument("--models-dir", default=os.environ.get("PLUGBOARD_MODELS", str(ROOT / "models")))
    p.add_argument("--adapter-wasm", help="a tool-use adapter build to swap in (default: built from plugins/)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--swap-every", type=float, default=3)
    p.add_argument("--max-tokens", type=int, default=12)
    p.add_argument("--no-swaps", action="store_true", help="leave the adapters alone (to tell what grows)")
    p.add_argument("--no-second-model", action="store_true", help="leave the second model alone")
    p.add_argument("--rss-growth", type=float, default=0.10, help="the most RSS may grow after warm-up")
    return p.parse_args()


def adapter_wasm(args):
    if args.adapter_wasm:
        return Path(args.adapter_wasm)
    target = ROOT / "target/plugins"
    built = target / "wasm32-wasip2/plugin/adapter_tool_use.wasm"
    subprocess.run(["cargo", "build", "--quiet", "--target", "wasm32-wasip2", "--profile", "plugin",
                    "--target-dir", str(target), "-p", "adapter-tool-use"], cwd=ROOT, check=True)
    return built


def start_server(args, plugins, config):
    process = subprocess.Popen(
        [args.binary, "serve", "--host", "127.0.0.1", "--port", "0", "--models-dir", args.models_dir,
         "--plugins", str(plugins), "--config", str(config), "--queue-limit", "256",
         "--keep-alive", "5m", "--shutdown-grace", "5s"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if line.startswith("plugboard: serving on "):
            base = line.split("serving on ", 1)[1].strip()
            # Keep reading the log so the server never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, base
    raise SystemExit("plugboard serve did not start")


def proc_status(pid):
    text = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) * 1024
    threads = int(re.search(r"Threads:\s+(\d+)", text).group(1))
    return {"rss_bytes": rss, "threads": threads}


class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.outcomes = Counter()
        self.failures = []
        self.ttft = []

    def record(self, kind, outcome, failure=None, ttft=None):
        with self.lock:
            self.outcomes[f"{kind}:{outcome}"] += 1
            if failure:
                self.failures.append(f"{kind}: {failure}")
            if ttft is not None:
                self.ttft.append(ttft)


def judge(results, kind, response):
    status = response.status_code
    expected = EXPECTED.get(kind, set(range(200, 300)))
    ok = status in expected or status in LOAD_STATUSES
    results.record(kind, status, None if ok else f"HTTP {status}: {response.text[:200]}")


def stream_chat(client, base, results, body, cancel_after=None):
    kind = "stream_cancelled" if cancel_after else ("stream_tools" if "tools" in body else "stream")
    started = time.monotonic()
    first = None
    with client.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            response.read()
            return judge(results, kind, response)
        chunks = 0
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                code = event["error"].get("code")
                if code in ("queue_full", "server_shutting_down"):
                    return results.record(kind, f"error:{code}")
                return results.record(kind, "error", f"error event: {event['error']}")
            delta = (event.get("choices") or [{}])[0].get("delta", {}) if event.get("choices") else {}
            if first is None and (delta.get("content") or delta.get("tool_calls")):
                first = time.monotonic() - started
            chunks += 1
            if cancel_after and chunks >= cancel_after:
                return results.record(kind, "cancelled", ttft=first)
    results.record(kind, 200, ttft=first)


def client_loop(base, model, results, stop, max_tokens, seed):
    rng = random.Random(seed)
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    with httpx.Client(timeout=300) as client:
        while not stop.is_set():
            pick = rng.random()
            try:
                if pick < 0.25:
                    stream_chat(client, base, results, {"model": model, "stream": True, "max_tokens": max_tokens,
                                                        "messages": [{"role": "user", "content": "Count to ten."}]})
                elif pick < 0.40:
                    stream_chat(client, base, results, {"model": model, "stream": True, "max_tokens": 48,
                                                        "messages": messages, "tools": WEATHER})
                elif pick < 0.50:
                    stream_chat(client, base, results, {"model": model, "stream": True, "max_tokens": 64,
                                                        "messages": [{"role": "user", "content": "Tell a story."}]},
                                cancel_after=rng.randint(1, 4))
                elif pick < 0.62:
                    judge(results, "whole_tools", client.post(f"{base}/v1/chat/completions", json={
                        "model": model, "max_tokens": 48, "messages": messages, "tools": WEATHER}))
                elif pick < 0.72:
                    judge(results, "ollama_chat", client.post(f"{base}/api/chat", json={
                        "model": model, "stream": False, "options": {"num_predict": max_tokens},
                        "messages": [{"role": "user", "content": "Say hello."}]}))
                elif pick < 0.80:
                    judge(results, "completion_ids", client.post(f"{base}/v1/completions", json={
                        "model": model, "prompt": [9707, 11, 1879], "max_tokens": max_tokens}))
                elif pick < 0.87:
                    judge(results, "malformed", client.post(
                        f"{base}/v1/chat/completions", content=b'{"model": "x", "messages": [',
                        headers={"content-type": "application/json"}))
                elif pick < 0.93:
                    judge(results, "wrong_types", client.post(f"{base}/v1/chat/completions", json={
                        "model": model, "messages": "not a list", "max_tokens": "many"}))
                else:
                    judge(results, "oversized", client.post(
                        f"{base}/v1/chat/completions", content=b"x" * (5 << 20),
                        headers={"content-type": "application/json"}))
            except httpx.HTTPError as e:
                results.record("transport", type(e).__name__, f"{type(e).__name__}: {e}")


def swapper(plugins, good, results, stop, every):
    target = plugins / "tool-use.wasm"
    n = 0
    while not stop.wait(every):
        n += 1
        if n % 2:
            shutil.copy(good, target)
            results.record("swap", "good")
        else:
            target.write_bytes(b"\0asm broken on purpose")
            results.record("swap", "broken")


def loader(base, results, stop):
    with httpx.Client(timeout=300) as client:
        while not stop.wait(5):
            for keep in ("5m", 0):
                response = client.post(f"{base}/api/generate", json={"model": "gemma3-270m", "keep_alive": keep})
                judge(results, "second_model", response)


def main():
    args = parse_args()
    if not Path(args.models_dir, QWEN).is_file():
        raise SystemExit(f"no test model in {args.models_dir}: run scripts/fetch_test_models.py")
    good = adapter_wasm(args)
    work = Path(tempfile.mkdtemp(prefix="plugboard-soak-"))
    plugins = work / "plugins"
    plugins.mkdir()
    config = work / "models.toml"
    config.write_text(f'[[models]]\nid = "qwen-tool-use"\nsource = "{Path(args.models_dir, QWEN)}"\n'
                      'adapter = "tool-use"\n')
    process, base = start_server(args, plugins, config)
    results = Results()
    stop = threading.Event()
    try:
        workers = [threading.Thread(target=client_loop, args=(
            base, "qwen2.5-coder-0.5b" if i % 2 else "qwen-tool-use", results, stop, args.max_tokens, i))
            for i in range(args.clients)]
        if not args.no_swaps:
            workers.append(threading.Thread(target=swapper, args=(plugins, good, results, stop, args.swap_every)))
        if not args.no_second_model:
            workers.append(threading.Thread(target=loader, args=(base, results, stop)))
        for w in workers:
            w.start()
        # RSS every 5 s. Warm-up is the first quarter of the run, and at least its first 15 s
        # (or half of a shorter run): in its first 10 s a cold server is still compiling the
        # adapters' optimised code and filling its sandbox pools and prompt caches, and a 30 s
        # run measured from 7.5 s counted that as growth.
        samples = []
        started = time.monotonic()
        warm = None
        warm_up = max(args.seconds * 0.25, min(15, args.seconds / 2))
        while (elapsed := time.monotonic() - started) < args.seconds:
            time.sleep(min(5, args.seconds - elapsed))
            samples.append(proc_status(process.pid)["rss_bytes"] >> 20)
            if warm is None and time.monotonic() - started >= warm_up:
                warm = proc_status(process.pid)
        stop.set()
        for w in workers:
            w.join(timeout=600)
        # The second model unloaded, and the plugin folder back to the good build, as at warm-up.
        httpx.post(f"{base}/api/generate", json={"model": "gemma3-270m", "keep_alive": 0}, timeout=60)
        time.sleep(1)
        end = proc_status(process.pid)
        metrics = httpx.get(f"{base}/metrics", timeout=60).text
        in_flight = next((float(l.split()[-1]) for l in metrics.splitlines()
                          if l.startswith("plugboard_requests_in_flight")), None)
        alive = process.poll() is None
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(work, ignore_errors=True)
    ttft = sorted(results.ttft)
    growth = (end["rss_bytes"] - warm["rss_bytes"]) / warm["rss_bytes"]
    report = {
        "clients": args.clients, "seconds": args.seconds,
        "requests": sum(v for k, v in results.outcomes.items() if not k.startswith("swap")),
        "outcomes": dict(sorted(results.outcomes.items())),
        "failures": results.failures[:50], "failure_count": len(results.failures),
        "ttft_p50_ms": round(1000 * statistics.median(ttft), 1) if ttft else None,
        "ttft_p99_ms": round(1000 * ttft[min(len(ttft) - 1, int(0.99 * len(ttft)))], 1) if ttft else None,
        "warm": warm, "end": end, "rss_growth": round(growth, 4), "rss_mib_every_5s": samples,
        "in_flight_at_end": in_flight, "server_alive": alive,
    }
    report["ok"] = (not results.failures and alive and in_flight == 0
                    and growth <= args.rss_growth and end["threads"] <= warm["threads"] + 4)
    print(json.dumps(report, indent=1))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
