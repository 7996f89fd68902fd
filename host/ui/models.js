// The model selector: every model of `/v1/models` with its capabilities as badges, what
// `/api/ps` says of the loaded ones, and a Pull button for those not downloaded yet.

import { getJson, postStream, el, formatBytes } from "./api.js";

const STATE_LABELS = {
  running: "loaded · busy",
  idle: "loaded · idle",
  available: "not loaded",
  not_downloaded: "not downloaded",
  remote: "remote",
};

/** The badges of one `/v1/models` entry: `[key, value, label]`. The tests read them back. */
export function badgesOf(model) {
  const p = model.plugboard || {};
  const caps = p.capabilities || {};
  const badges = [];
  if (caps.tools) badges.push(["tools", "true", "tools"]);
  if (caps.parallel_tool_calls) badges.push(["parallel_tool_calls", "true", "parallel calls"]);
  if (caps.reasoning) badges.push(["reasoning", "true", "reasoning"]);
  if (p.context_length) badges.push(["context_length", String(p.context_length), `ctx ${p.context_length}`]);
  if (p.adapter) {
    const adapter = p.adapter_version ? `${p.adapter}/${p.adapter_version}` : p.adapter;
    badges.push(["adapter", adapter, adapter.replace("/", " ")]);
  }
  const backend = p.backend || "local";
  badges.push(["backend", backend, backend === "local" ? "local" : `remote: ${backend}`]);
  if (p.state) badges.push(["state", p.state, STATE_LABELS[p.state] || p.state]);
  return badges;
}

export class Models {
  constructor(list, onSelect) {
    this.list = list;
    this.onSelect = onSelect;
    this.models = [];
    this.ps = new Map();
    this.pulls = new Map(); // model id -> {completed, total, status}
    this.pullErrors = new Map(); // model id -> why its last pull failed
    this.asked = 0; // refreshes asked for; only the latest one's answer is drawn
    this.selectedId = remembered();
  }

  selected() {
    return this.models.find((m) => m.id === this.selectedId) || null;
  }

  async refresh() {
    const ask = ++this.asked;
    const [models, ps] = await Promise.all([
      getJson("/v1/models"),
      getJson("/api/ps").catch(() => ({ models: [] })),
    ]);
    if (ask !== this.asked) return; // a later refresh is under way: its answer is newer
    this.models = models.data;
    this.ps = new Map(ps.models.map((m) => [m.name, m]));
    if (!this.selected()) {
      const first =
        this.models.find((m) => m.plugboard?.loaded) ||
        this.models.find((m) => m.plugboard?.available);
      this.selectedId = first ? first.id : null;
    }
    this.render();
    this.onSelect(this.selected());
  }

  select(id) {
    this.selectedId = id;
    remember(id);
    this.render();
    this.onSelect(this.selected());
  }

  render() {
    const focused = document.activeElement?.closest?.(".model")?.dataset.modelId;
    this.list.replaceChildren(...this.models.map((m) => this.item(m)));
    if (focused) this.list.querySelector(`[data-model-id="${CSS.escape(focused)}"] .pick`)?.focus();
  }

  item(model) {
    const p = model.plugboard || {};
    const current = model.id === this.selectedId;
    const ps = this.ps.get(model.id);
    const pull = this.pulls.get(model.id);
    const badges = badgesOf(model).map(([key, value, label]) =>
      el("span", { class: "badge", dataset: { badge: key, value } }, label));
    return el("li", { class: "model", dataset: { modelId: model.id }, "aria-current": current ? "true" : "false" },
      el("button", { class: "pick", type: "button", "aria-pressed": current ? "true" : "false",
        onclick: () => this.select(model.id) }, model.id),
      p.description && el("div", { class: "description" }, p.description),
      el("div", { class: "badges" }, badges),
      ps && el("div", { class: "description" },
        `${formatBytes(ps.size)} in memory${ps.expires_at ? `, until ${new Date(ps.expires_at).toLocaleTimeString()}` : ""}`),
      p.state === "not_downloaded" && !pull &&
        el("button", { type: "button", class: "pull", onclick: () => this.pull(model.id) },
          this.pullErrors.has(model.id) ? "Retry pull" : p.size ? `Pull (${formatBytes(p.size)})` : "Pull"),
      this.pullErrors.has(model.id) && !pull &&
        el("div", { class: "error" }, this.pullErrors.get(model.id)),
      pull && this.progressOf(pull, model.id),
    );
  }

  progressOf(pull, id) {
    pull.bar = el("progress", { max: pull.total || 1, value: pull.completed || 0, "aria-label": `Pulling ${id}` });
    pull.label = el("span", { class: "muted" }, pull.status);
    return el("div", { class: "pull-progress" }, pull.bar, " ", pull.label);
  }

  /** Pulls a model through `/v1/models/pull`, showing its progress. */
  async pull(id) {
    const progress = { status: "starting", completed: 0, total: 0 };
    this.pulls.set(id, progress);
    this.pullErrors.delete(id);
    this.render();
    try {
      for await (const step of postStream("/v1/models/pull", { model: id })) {
        if (step.status === "error") throw new Error(step.error?.message || "the pull failed");
        progress.status = step.status;
        if (step.total) progress.total = step.total;
        if (step.completed !== undefined) progress.completed = step.completed;
        // In place: redrawing the list would take the button from under the user's pointer.
        progress.bar.max = progress.total || 1;
        progress.bar.value = progress.completed;
        progress.label.textContent = step.status;
      }
    } catch (error) {
      this.pullErrors.set(id, `the pull failed: ${error.message}`);
    }
    this.pulls.delete(id);
    await this.refresh();
  }
}

/** The model chosen last time, where this browser lets the page keep it. */
function remembered() {
  try {
    return localStorage.getItem("plugboard.model");
  } catch {
    return null;
  }
}

function remember(id) {
  try {
    localStorage.setItem("plugboard.model", id);
  } catch {
    // Storage is off: the choice lasts as long as the page.
  }
}
