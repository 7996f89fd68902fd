#!/usr/bin/env python3
"""Hot swap through the server: while 8 clients stream chat completions, the adapter's .wasm in
the plugin folder is replaced. Every stream must finish without error on the version it started
with, and requests started after the swap must use the new version (response header and
/v1/adapters).

Usage: hot_swap_client.py BASE_URL MODEL PLUGIN_FILE NEW_WASM
"""

import json
import shutil
import sys
import threading
import time
import urllib.request

import openai

BASE, MODEL, PLUGIN_FILE, NEW_WASM = sys.argv[1:5]
client = openai.OpenAI(base_url=f"{BASE}/v1", api_key="unused", max_retries=0, timeout=600)
started = threading.Barrier(9)
results = [None] * 8


def stream(i):
    try:
        with client.chat.completions.with_streaming_response.create(
            model=MODEL, messages=[{"role": "user", "content": f"Count to {i + 3}."}],
            temperature=0, max_tokens=6, stream=True,
        ) as response:
            adapter = response.headers.get("x-plugboard-adapter")
            content, first = "", True
            for chunk in response.parse():
                if first:
                    first = False
                    started.wait(timeout=300)
                for choice in chunk.choices:
                    content += choice.delta.content or ""
            results[i] = {"adapter": adapter, "content": content, "error": None}
    except Exception as e:  # noqa: BLE001 - any failure is what the test looks for
        results[i] = {"adapter": None, "content": None, "error": repr(e)}
        try:
            started.abort()
        except threading.BrokenBarrierError:
            pass


def adapter_version():
    with urllib.request.urlopen(f"{BASE}/v1/adapters", timeout=60) as r:
        data = json.loads(r.read())["data"]
    return next((e["version"] for e in data if e["name"] == "probe"), None)


threads = [threading.Thread(target=stream, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
try:
    started.wait(timeout=300)  # all 8 streams are running on the old version
except threading.BrokenBarrierError:
    for t in threads:
        t.join(timeout=60)
    sys.exit(f"a stream failed before the swap: {[r for r in results if r and r['error']]}")
swap_at = time.time()
shutil.copyfile(NEW_WASM, PLUGIN_FILE + ".tmp")
shutil.move(PLUGIN_FILE + ".tmp", PLUGIN_FILE)
while adapter_version() != "2.0.0":
    if time.time() - swap_at > 30:
        break
    time.sleep(0.02)
swap_seconds = time.time() - swap_at
for t in threads:
    t.join()

after = []
for i in range(2):
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], temperature=0, max_tokens=2)
    after.append({"adapter": raw.headers.get("x-plugboard-adapter"), "content": raw.parse().choices[0].message.content})



def probe_swaps():
    """plugboard_adapter_swaps_total for the probe adapter, by outcome."""
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(f"{BASE}/metrics", timeout=60) as r:
        text = r.read().decode()
    return {s.labels["outcome"]: s.value
            for f in text_string_to_metric_families(text) if f.name == "plugboard_adapter_swaps"
            for s in f.samples if s.name.endswith("_total") and s.labels.get("adapter") == "probe"}


# Once swapped, the server stays quiet: the same counts some seconds later.
swaps = probe_swaps()
time.sleep(2)
print(json.dumps({"during": results, "after": after, "swap_seconds": swap_seconds, "listed_version": adapter_version(),
                  "swaps": swaps, "swaps_later": probe_swaps()}))
