#!/usr/bin/env python3
"""Hot swap of one adapter through its implementations in several languages, through the server:
while clients stream chat completions without pause, the adapter's .wasm in the plugin folder is
replaced by each given file in turn, waiting each time until /v1/adapters lists the new version.
Each version answers requests before the next swap; no request may fail.

Usage: language_swap_client.py BASE_URL MODEL ADAPTER PLUGIN_FILE WASM VERSION [WASM VERSION ...]
Prints JSON: the requests made and failed, the adapters that answered, and each swap's seconds.
"""

import json
import shutil
import sys
import threading
import time
import urllib.request

import openai

BASE, MODEL, ADAPTER, PLUGIN_FILE = sys.argv[1:5]
SWAPS = list(zip(sys.argv[5::2], sys.argv[6::2]))
client = openai.OpenAI(base_url=f"{BASE}/v1", api_key="unused", max_retries=0, timeout=600)
stop = threading.Event()
lock = threading.Lock()
report = {"requests": 0, "failures": [], "answered_by": [], "swaps": []}


def stream_until_stopped(i):
    # Bounded: the loop ends when the swaps are done, or after 600 s whatever happens.
    deadline = time.time() + 600
    while not stop.is_set() and time.time() < deadline:
        try:
            with client.chat.completions.with_streaming_response.create(
                model=MODEL, messages=[{"role": "user", "content": f"Say {i}."}],
                temperature=0, max_tokens=3, stream=True,
            ) as response:
                adapter = response.headers.get("x-plugboard-adapter")
                for _ in response.parse():
                    pass
            with lock:
                report["requests"] += 1
                if adapter not in report["answered_by"]:
                    report["answered_by"].append(adapter)
        except Exception as e:  # noqa: BLE001 - any failure is what the test looks for
            with lock:
                report["requests"] += 1
                report["failures"].append(repr(e))


def listed_version():
    with urllib.request.urlopen(f"{BASE}/v1/adapters", timeout=60) as r:
        data = json.loads(r.read())["data"]
    return next((e["version"] for e in data if e["name"] == ADAPTER), None)


threads = [threading.Thread(target=stream_until_stopped, args=(i,)) for i in range(2)]
for t in threads:
    t.start()
for wasm, version in SWAPS:
    time.sleep(1.0)  # let requests run on the serving version
    swap_at = time.time()
    shutil.copyfile(wasm, PLUGIN_FILE + ".tmp")
    shutil.move(PLUGIN_FILE + ".tmp", PLUGIN_FILE)
    while listed_version() != version and time.time() - swap_at < 120:
        time.sleep(0.02)
    report["swaps"].append({"version": version, "listed": listed_version(), "seconds": time.time() - swap_at})
    # Each version serves requests (streams started after the swap) before the next swap.
    label = f"{ADAPTER}/{version}"
    while time.time() - swap_at < 180:
        with lock:
            if label in report["answered_by"]:
                break
        time.sleep(0.05)
stop.set()
for t in threads:
    t.join()
print(json.dumps(report))
