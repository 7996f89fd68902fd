// The adapters panel: every adapter of `/v1/adapters` with its state, version, source, last
// error and swap history, and a log of the server's events.

import { getJson, el } from "./api.js";

const KEEP_EVENTS = 100;

export class Adapters {
  constructor(list, log) {
    this.list = list;
    this.log = log;
    this.flash = new Set();
    this.asked = 0; // refreshes asked for; only the latest one's answer is drawn
  }

  async refresh() {
    const ask = ++this.asked;
    const { data } = await getJson("/v1/adapters");
    if (ask !== this.asked) return;
    data.sort((a, b) => a.name.localeCompare(b.name));
    // Histories the user opened stay open.
    const open = new Set([...this.list.querySelectorAll("li.adapter details[open]")]
      .map((d) => d.closest("li").dataset.adapter));
    this.list.replaceChildren(...data.map((a) => this.item(a, open.has(a.name))));
    this.flash.clear();
  }

  /** Shown instead of the list when the key may not read adapters. */
  unavailable(message) {
    this.list.replaceChildren(el("li", { class: "muted" }, `Not shown: ${message}`));
  }

  /** Marks an adapter to be highlighted when it is drawn next. */
  changed(name) {
    this.flash.add(name);
  }

  item(adapter, historyOpen) {
    const history = adapter.history || [];
    const error = adapter.last_error;
    return el("li", { class: `adapter${this.flash.has(adapter.name) ? " flash" : ""}`,
      dataset: { adapter: adapter.name, version: adapter.version || "", state: adapter.state } },
      el("div", { class: "head" },
        el("span", {}, el("span", { class: "name" }, adapter.name), " ",
          el("span", { class: "version" }, adapter.version || "")),
        el("span", { class: "state", dataset: { state: adapter.state } }, adapter.state)),
      el("div", { class: "source" }, adapter.source,
        adapter.overrides ? ` (replaces ${adapter.overrides})` : "",
        adapter.faults ? ` · ${adapter.faults} faults` : ""),
      error && el("div", { class: "last-error" },
        `rejected ${error.source}: ${error.message}`),
      history.length > 0 && el("details", { open: historyOpen },
        el("summary", {}, `${history.length} version${history.length === 1 ? "" : "s"} served`),
        el("ol", {}, history.map((swap) => el("li", {},
          `${swap.version} from ${swap.source} at ${new Date(swap.at * 1000).toLocaleTimeString()}`)))),
    );
  }

  /** Adds one event of `/v1/events` to the log, newest first. */
  logEvent(event) {
    const at = event.at ? new Date(event.at) : new Date();
    // A download's progress takes one line, updated in place.
    if (event.type === "pull_progress") {
      const line = [...this.log.querySelectorAll('[data-type="pull_progress"]')]
        .find((li) => li.dataset.file === event.file);
      if (line) {
        line.lastChild.textContent = describe(event);
        return;
      }
    }
    this.log.prepend(el("li", { dataset: { type: event.type, failed: event.error ? "true" : "false" } },
      el("time", { dateTime: at.toISOString() }, at.toLocaleTimeString()), " ", el("span", {}, describe(event))));
    if (event.file) this.log.firstElementChild.dataset.file = event.file;
    while (this.log.children.length > KEEP_EVENTS) this.log.lastElementChild.remove();
  }
}

function describe(e) {
  switch (e.type) {
    case "adapter_swapped": return `adapter ${e.adapter} ${e.version} swapped in from ${e.source}`;
    case "adapter_rejected": return `adapter ${e.adapter} rejected (${e.file}): ${e.reason}`;
    case "adapter_removed": return `adapter ${e.adapter} removed`;
    case "adapter_optimised": return `adapter ${e.adapter} ${e.version} runs optimised code (compiled in ${e.seconds.toFixed(1)} s)`;
    case "model_loaded": return `model ${e.model} loaded in ${e.seconds.toFixed(1)} s`;
    case "model_unloaded": return `model ${e.model} unloaded`;
    case "pull_progress": return `pulling ${e.file}: ${Math.floor((100 * e.completed) / (e.total || 1))}%`;
    case "pull_done": return e.error ? `pull of ${e.file} failed: ${e.error}` : `pulled ${e.file}`;
    case "fallback_taken": return `fallback from ${e.from} to ${e.to}: ${e.reason}`;
    case "resync": return `missed ${e.missed} events: reloaded the state`;
    default: return `${e.type}`;
  }
}
