#!/usr/bin/env python3
"""The web UI in a real browser: Debian's Chromium, headless, driven by Selenium through
Debian's chromedriver (nothing is downloaded from a browser vendor). Prints what it saw as
JSON; the Rust test asserts on it. Screenshots go to OUT_DIR.

Usage: ui_browser.py BASE_URL PLUGIN_DIR TEST_PLUGINS_DIR OUT_DIR API_KEY
  PLUGIN_DIR         the server's plugin folder (probe.wasm serves the model probe-demo)
  TEST_PLUGINS_DIR   holds tool-use.wasm, probe-v2.wasm
  API_KEY            the key the server asks for; the page is given it as a person would
"""

import json
import os
import shutil
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

BASE, PLUGIN_DIR, TEST_PLUGINS, OUT, KEY = sys.argv[1:6]
os.makedirs(OUT, exist_ok=True)
seen = {}


def api(path):
    request = urllib.request.Request(f"{BASE}{path}", headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


driver = browser()


def shot(name):
    path = os.path.join(OUT, f"{name}.png")
    driver.save_screenshot(path)
    seen.setdefault("screenshots", []).append(path)


def css(selector, within=None):
    return (within or driver).find_elements(By.CSS_SELECTOR, selector)


def until(what, condition, timeout=120):
    """Waits for `condition()` to be truthy; returns it and the seconds it took."""
    started = time.monotonic()
    try:
        # The page redraws lists as events arrive: an element read mid-redraw is read again.
        value = WebDriverWait(driver, timeout, poll_frequency=0.05,
                              ignored_exceptions=[StaleElementReferenceException]).until(lambda _: condition())
    except TimeoutException:
        shot(f"timeout-{what}")
        raise SystemExit(f"timed out waiting for {what}; events: {events_text()}")
    return value, time.monotonic() - started


def events_text():
    return [e.text for e in css("#events li")][:10]


def pick(model_id):
    """Selects a model with the keyboard: focus its button, press Enter (again, if the list
    was redrawn under it)."""
    def chosen():
        if css(f'li.model[data-model-id="{model_id}"][aria-current="true"]'):
            return True
        button = css(f'li.model[data-model-id="{model_id}"] .pick')[0]
        driver.execute_script("arguments[0].focus()", button)
        button.send_keys(Keys.ENTER)
        return False
    until(f"{model_id} selected", chosen)


def ask(text):
    """Types a message and sends it with Enter; returns the finished reply's element."""
    before = len(css("li.turn.assistant"))
    box = driver.find_element(By.ID, "prompt")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)
    return finished_reply(before)


def finished_reply(before):
    def done():
        turns = css("li.turn.assistant")
        if len(turns) <= before:
            return None
        turn = turns[-1]
        if "failed" in turn.get_attribute("class"):
            raise SystemExit(f"the reply failed: {turn.text}")
        return turn if css(".perf:not([hidden])", turn) else None
    turn, _ = until("a reply", done, timeout=300)
    return turn


def reply_facts(turn):
    metrics = {dd.get_attribute("data-metric"): dd.get_attribute("data-value")
               for dd in css(".perf dd", turn)}
    calls = [{"name": c.get_attribute("data-name"), "valid_json": c.get_attribute("data-valid-json"),
              "arguments": css("pre.arguments", c)[0].text} for c in css(".call", turn)]
    return {
        "content": " ".join(e.text for e in css(":scope > .content", turn)),
        "adapter": turn.get_attribute("data-adapter"),
        "calls": calls,
        "metrics": metrics,
        "problems": [p.text for p in css(".problem", turn)],
        "context_bar": bool(css(".context-bar:not([hidden]) .prompt", turn)),
    }


def adapter(name):
    """What the panel shows of an adapter: version, source, last error (None when absent).
    Read inside `until`: the panel is redrawn as events arrive."""
    rows = css(f'#adapters li[data-adapter="{name}"]')
    if not rows:
        return None
    row = rows[0]
    errors = css(".last-error", row)
    return {"version": row.get_attribute("data-version"),
            "source": css(".source", row)[0].text,
            "error": errors[0].text if errors else None}


try:
    # The server asks for a key: the page says so, and the person types it in.
    driver.get(f"{BASE}/")
    until("the key form", lambda: css("#key-form:not([hidden])"))
    seen["asked_for_key"] = driver.find_element(By.ID, "connection").text
    box = driver.find_element(By.ID, "api-key")
    box.send_keys(KEY)
    box.send_keys(Keys.ENTER)
    until("the event stream", lambda: css('#connection[data-state="live"]'))
    # The refused requests before the key was given are the browser's only errors so far.
    seen["console_before_key"] = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    until("the models", lambda: css("li.model"))
    until("the adapters", lambda: css("#adapters li.adapter"))

    # The selector: badges equal to /v1/models.
    from_api = api("/v1/models")["data"]
    shown = {}
    for item in css("li.model"):
        shown[item.get_attribute("data-model-id")] = sorted(
            [b.get_attribute("data-badge"), b.get_attribute("data-value")] for b in css(".badge", item))

    def expected(model):
        p = model["plugboard"]
        caps = p.get("capabilities") or {}
        badges = [[k, "true"] for k in ("tools", "parallel_tool_calls", "reasoning") if caps.get(k)]
        if p.get("context_length"):
            badges.append(["context_length", str(p["context_length"])])
        if p.get("adapter"):
            version = p.get("adapter_version")
            badges.append(["adapter", f"{p['adapter']}/{version}" if version else p["adapter"]])
        badges.append(["backend", p.get("backend") or "local"])
        badges.append(["state", p["state"]])
        return sorted(badges)

    seen["models_api"] = [m["id"] for m in from_api]
    seen["models_shown"] = list(shown)
    seen["badge_mismatches"] = [
        {"model": m["id"], "api": expected(m), "shown": shown.get(m["id"])}
        for m in from_api if shown.get(m["id"]) != expected(m)
    ]
    seen["qwen_badges"] = shown.get("qwen2.5-coder-0.5b")
    shot("1-models")

    # Short, greedy replies: the machine is small, and the test wants the same reply each time.
    driver.find_element(By.ID, "max-tokens").send_keys("48")
    driver.find_element(By.ID, "temperature").send_keys("0")

    # A model from the hub: Pull shows its progress, then the model is here.
    pull = css('li.model[data-model-id="gemma-hub"] button.pull')
    seen["pull_button"] = bool(pull)
    if pull:
        pull[0].click()
        progress, _ = until("pull progress", lambda: [
            float(p.get_attribute("value")) for p in
            css('li.model[data-model-id="gemma-hub"] progress') if float(p.get_attribute("value") or 0) > 0])
        seen["pull_progress_seen"] = progress[0]
        shot("2-pulling")
        until("the pulled model", lambda: css(
            'li.model[data-model-id="gemma-hub"] .badge[data-badge="state"][data-value="available"]'), 300)
        seen["pull_logged"], _ = until("the pull's event", lambda: [t for t in events_text() if "pulled" in t])

    # Chat with tools: the weather example gives a call card with valid JSON arguments.
    pick("qwen2.5-coder-0.5b")
    turn = ask("What is the weather in Paris?")
    seen["tool_reply"] = reply_facts(turn)
    shot("3-tool-call")

    # Answer the call with a result: the turn goes on.
    boxes = css("textarea.result", turn)
    seen["result_boxes"] = len(boxes)
    if boxes:
        before = len(css("li.turn.assistant"))
        boxes[0].send_keys('{"temperature": 18, "unit": "celsius", "sky": "sunny"}')
        css("button.send-results", turn)[0].click()
        seen["after_result"] = reply_facts(finished_reply(before))
        shot("4-after-result")

    # A call that breaks its schema (a model without constrained decoding): a warning.
    pick("qwen-free")
    station = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"station": {"type": "string", "pattern": "^[A-Z]{4}$"}},
        "required": ["station"]}}}]
    driver.execute_script(
        "const box = document.getElementById('tools-json'); box.value = arguments[0];"
        "box.dispatchEvent(new Event('input'));", json.dumps(station))
    css("#clear")[0].click()
    seen["invalid_call"] = reply_facts(ask("What is the weather in Paris?"))
    shot("5-problem")

    # A new tool-use.wasm in the plugin folder: the panel shows the swap within 2 s.
    before, _ = until("tool-use shown", lambda: adapter("tool-use"))
    shutil.copy(os.path.join(TEST_PLUGINS, "tool-use.wasm"), os.path.join(PLUGIN_DIR, "tool-use.wasm"))
    after, seconds = until("tool-use swapped", lambda: (a := adapter("tool-use")) and
                           "tool-use.wasm" in a["source"] and a, 10)
    seen["tool_use_swap"] = {"seconds": seconds, "before": before["source"], "after": after["source"]}

    # The probe adapter names its version in every reply: v1, then v2 once swapped.
    pick("probe-demo")
    seen["probe_v1"] = reply_facts(ask("Which version are you?"))
    shutil.copy(os.path.join(TEST_PLUGINS, "probe-v2.wasm"), os.path.join(PLUGIN_DIR, "probe.wasm"))
    _, seconds = until("probe 2.0.0", lambda: (a := adapter("probe")) and a["version"] == "2.0.0", 10)
    seen["probe_swap_seconds"] = seconds
    shot("6-swapped")
    seen["probe_v2"] = reply_facts(ask("And now?"))

    # A broken file: rejected with the reason; the old version keeps serving.
    with open(os.path.join(PLUGIN_DIR, "probe.wasm"), "wb") as broken:
        broken.write(b"this is not a wasm component")
    shown, seconds = until("probe rejected", lambda: (a := adapter("probe")) and a["error"] and a, 10)
    logged, _ = until("the rejection's event", lambda: [t for t in events_text() if "rejected" in t])
    seen["rejected"] = {"seconds": seconds, "text": shown["error"], "version": shown["version"],
                        "logged": logged}
    seen["probe_after_reject"] = reply_facts(ask("Still there?"))
    shot("7-rejected")

    # A phone's width: one column, nothing wider than the screen.
    driver.set_window_size(390, 844)
    time.sleep(0.3)
    seen["phone_overflow_px"] = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    shot("8-phone")

    seen["console_errors"] = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
finally:
    driver.quit()

print(json.dumps(seen))
