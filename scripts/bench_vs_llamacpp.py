#!/usr/bin/env python3
"""plugboard against llama.cpp on the same GGUF file, same threads, same run.

Runs llama.cpp (through llama-cpp-python) and `plugboard bench --json` alternately, several
repetitions each, and prints one table: prefill tok/s on a 512-token prompt, decode tok/s over
128 tokens (both lengths are options), peak RSS, and plugboard's ratio to llama.cpp. Both sides do the same work: the
prompt is the same prose `plugboard bench` uses, cycled to 512 tokens; the decode figure comes
from a 16-token prompt followed by 128 steps, one token per forward pass, and the decode after
the whole prompt from 32 more steps there.

The machines this runs on are shared and noisy: the two engines alternate within each
repetition so that a slow patch hits both, and the table reports medians and the median of
the per-repetition ratios, per second of wall time and per second of CPU time (the second
does not count the time other processes take from us, so it varies less).

Usage (llama-cpp-python must be importable by the interpreter):
    /work/venv-llama/bin/python scripts/bench_vs_llamacpp.py --model models/X.gguf \
        [--threads 1] [--reps 3] [--plugboard target/release/plugboard] [--streams 4]

Each engine runs in its own process, so each one's peak RSS is its own.

plugboard converts a model's weights for its kernels at the first load and keeps them in its
weight cache; later loads map them, as llama.cpp maps the GGUF. The script gives plugboard a
fresh cache folder, times one first load (converting and writing the cache) before the
repetitions, and the repetitions then load from the cache: the table shows both.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PROSE = (
    "The quick brown fox jumps over the lazy dog while the committee reviews the quarterly "
    "report on renewable energy, noting that solar capacity grew faster than expected. "
)


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def llama_worker(args):
    """One llama.cpp measurement in this process; prints JSON."""
    from llama_cpp import Llama

    start = time.perf_counter()
    llm = Llama(
        model_path=args.model,
        n_ctx=args.prompt_tokens + args.decode_tokens + 64,
        n_batch=512,
        n_ubatch=512,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    load_s = time.perf_counter() - start
    once = llm.tokenize(PROSE.encode(), add_bos=False, special=False)
    prompt = [once[i % len(once)] for i in range(args.prompt_tokens)]
    # Ready: one token through the model (the mapped weights are paged in on this first pass).
    llm.eval(prompt[:1])
    ready_s = time.perf_counter() - start
    # Warm-up: the first evaluation pays for lazy set-up (repacking, buffers).
    llm.reset()
    llm.eval(prompt[:8])
    llm.reset()
    t, c = time.perf_counter(), time.process_time()
    llm.eval(prompt)
    prefill_s, prefill_cpu = time.perf_counter() - t, time.process_time() - c
    # Decode after the whole prompt: attention over all its positions. (Which tokens are fed
    # does not change the time a step takes; llama-cpp-python keeps no logits to pick them
    # from unless logits_all, which costs a context's worth of vocabulary rows.)
    after = max(2, min(32, args.decode_tokens))
    t = time.perf_counter()
    for i in range(after - 1):
        llm.eval([once[i % len(once)]])
    context_decode_s = time.perf_counter() - t
    # Decode: a short fresh prompt, then steps of one token each (the prose's tokens, as
    # above).
    llm.reset()
    short = list(reversed([once[i % len(once)] for i in range(16)]))
    c = time.process_time()
    llm.eval(short)
    t = time.perf_counter()
    for i in range(args.decode_tokens - 1):
        llm.eval([once[i % len(once)]])
    decode_s, decode_cpu = time.perf_counter() - t, time.process_time() - c
    print(
        json.dumps(
            {
                "load_s": load_s,
                "ready_s": ready_s,
                "prefill_tokens_per_s": args.prompt_tokens / prefill_s,
                "decode_tokens_per_s": (args.decode_tokens - 1) / decode_s,
                "context_decode_tokens_per_s": (after - 1) / context_decode_s,
                # CPU time: the prompt's whole evaluation; the decode's 16-token prompt too,
                # as plugboard's figure includes it.
                "prefill_cpu_tokens_per_s": args.prompt_tokens / prefill_cpu,
                "decode_cpu_tokens_per_s": args.decode_tokens / decode_cpu,
                "peak_rss_mib": peak_rss_mib(),
            }
        )
    )


def run_json(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    for line in reversed(out.stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    sys.exit(f"{' '.join(cmd)} printed no JSON:\n{out.stdout[-2000:]}")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--decode-tokens", type=int, default=128)
    p.add_argument("--plugboard", default="target/release/plugboard")
    p.add_argument(
        "--streams",
        type=int,
        default=0,
        help="also measure plugboard's aggregate decode with this many concurrent streams",
    )
    p.add_argument("--json", action="store_true", help="print the raw measurements as JSON")
    p.add_argument("--llama-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.llama_worker:
        llama_worker(args)
        return

    common = [
        "--model", args.model,
        "--threads", str(args.threads),
        "--prompt-tokens", str(args.prompt_tokens),
        "--decode-tokens", str(args.decode_tokens),
    ]
    llama_cmd = [sys.executable, os.path.abspath(__file__), "--llama-worker", *common]
    weight_cache = tempfile.mkdtemp(prefix="plugboard-bench-weights-")
    plug_cmd = [args.plugboard, "bench", "--json", "--weight-cache", weight_cache, *common]
    if args.streams > 1:
        plug_cmd += ["--streams", str(args.streams)]
    env = dict(os.environ)
    # Both engines get exactly the threads asked for, OpenMP included.
    env["OMP_NUM_THREADS"] = str(args.threads)

    # The first load: converts the weights and writes the cache the repetitions load from.
    first = run_json(
        [args.plugboard, "bench", "--json", "--weight-cache", weight_cache,
         "--model", args.model, "--threads", str(args.threads),
         "--prompt-tokens", "1", "--decode-tokens", "2"],
        env,
    )
    if first.get("weight_cache") != "written":
        sys.exit(f"plugboard's first load did not write its weight cache: {first}")

    runs = {"llama": [], "plugboard": []}
    for rep in range(args.reps):
        # Alternate who goes first, so that a drift in machine load is shared.
        order = ["llama", "plugboard"] if rep % 2 == 0 else ["plugboard", "llama"]
        for who in order:
            cmd = llama_cmd if who == "llama" else plug_cmd
            runs[who].append(run_json(cmd, env))
        print(
            f"rep {rep + 1}/{args.reps}: "
            f"llama.cpp pp {runs['llama'][-1]['prefill_tokens_per_s']:.1f} "
            f"tg {runs['llama'][-1]['decode_tokens_per_s']:.1f} | "
            f"plugboard pp {runs['plugboard'][-1]['prefill_tokens_per_s']:.1f} "
            f"tg {runs['plugboard'][-1]['decode_tokens_per_s']:.1f}",
            file=sys.stderr,
        )

    def col(who, key):
        return [r[key] for r in runs[who] if r.get(key) is not None]

    def ratio(key):
        return median(
            [
                p[key] / l[key]
                for p, l in zip(runs["plugboard"], runs["llama"])
                if p.get(key) and l.get(key)
            ]
        )

    rows = [
        (f"prefill tok/s ({args.prompt_tokens}-token prompt)", "prefill_tokens_per_s"),
        (f"decode tok/s ({args.decode_tokens} tokens)", "decode_tokens_per_s"),
        (f"decode tok/s after the {args.prompt_tokens}-token prompt", "context_decode_tokens_per_s"),
        ("prefill tok/s per CPU second", "prefill_cpu_tokens_per_s"),
        ("decode tok/s per CPU second", "decode_cpu_tokens_per_s"),
        ("peak RSS MiB", "peak_rss_mib"),
        ("load s (lower is better)", "load_s"),
        ("load + first token s (lower is better)", "ready_s"),
    ]
    print(f"model {os.path.basename(args.model)}, {args.threads} thread(s), {args.reps} reps (medians)")
    print(
        f"plugboard's first load (weights converted, cache written): {first['load_s']:.2f} s, "
        f"{first['load_s'] / median(col('llama', 'load_s')):.2f}x llama.cpp's load; "
        f"the table's loads map the cache ({', '.join(sorted({r.get('weight_cache', '?') for r in runs['plugboard']}))})"
    )
    print(f"| {'':34} | {'llama.cpp':>10} | {'plugboard':>10} | {'ratio':>6} |")
    print(f"|{'-' * 36}|{'-' * 12}|{'-' * 12}|{'-' * 8}|")
    for label, key in rows:
        print(
            f"| {label:34} | {median(col('llama', key)):10.2f} | "
            f"{median(col('plugboard', key)):10.2f} | {ratio(key):6.2f} |"
        )
    streams = col("plugboard", "streams_decode_tokens_per_s")
    if streams:
        one = [r["decode_tokens_per_s"] for r in runs["plugboard"]]
        many = [r["streams_decode_tokens_per_s"] for r in runs["plugboard"]]
        print(
            f"plugboard aggregate decode, {args.streams} streams: {median(streams):.1f} tok/s "
            f"(median {median([m / o for m, o in zip(many, one)]):.2f}x one stream, same runs)"
        )
        probe = [
            r["streams_probe_ttft_ms"] / r["probe_alone_ttft_ms"]
            for r in runs["plugboard"]
            if r.get("streams_probe_ttft_ms") and r.get("probe_alone_ttft_ms")
        ]
        if probe:
            print(
                f"plugboard TTFT of a new 128-token prompt while {args.streams} streams decode: "
                f"median {median(probe):.2f}x its TTFT alone"
            )
    kernels = {r.get("kernels") for r in runs["plugboard"]}
    print(f"plugboard kernels: {', '.join(sorted(k for k in kernels if k))}")
    shutil.rmtree(weight_cache, ignore_errors=True)
    if args.json:
        print(json.dumps({"first_load": first, **runs}))


if __name__ == "__main__":
    main()
