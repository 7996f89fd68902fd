// The chat: streams `/v1/chat/completions`, shows content, reasoning, tool calls as cards as
// soon as the server releases them, the problems plugboard found, the adapter that served the
// reply and its speeds; the user answers tool calls with results and the turn goes on.

import { el, getJson, postStream } from "./api.js";

/** Two ready sets of tools for the tools editor. */
const EXAMPLES = {
  weather: [
    {
      type: "function",
      function: {
        name: "get_weather",
        description: "Current weather in a city",
        parameters: {
          type: "object",
          properties: {
            city: { type: "string", description: "City name, e.g. Paris" },
            unit: { type: "string", enum: ["celsius", "fahrenheit"] },
          },
          required: ["city"],
        },
      },
    },
  ],
  files: [
    {
      type: "function",
      function: {
        name: "search_web",
        description: "Search the web and return the top results",
        parameters: {
          type: "object",
          properties: {
            query: { type: "string" },
            max_results: { type: "integer", minimum: 1, maximum: 10 },
          },
          required: ["query"],
        },
      },
    },
    {
      type: "function",
      function: {
        name: "read_file",
        description: "Read a text file from the workspace",
        parameters: {
          type: "object",
          properties: { path: { type: "string" } },
          required: ["path"],
        },
      },
    },
  ],
};

const number = (value, digits = 1) =>
  Number.isFinite(value) ? value.toFixed(digits) : "—";

export class Chat {
  constructor(ids) {
    Object.assign(this, ids);
    this.messages = [];
    this.model = null;
    this.controller = null;
    // Which conversation a reply belongs to: one that ends after "New chat" is dropped.
    this.epoch = 0;
    // The result boxes of calls not answered yet.
    this.pendingResults = null;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.prompt.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    this.stop.addEventListener("click", () => this.controller?.abort());
    this.clear.addEventListener("click", () => {
      this.epoch += 1;
      this.controller?.abort();
      this.pendingResults = null;
      this.messages = [];
      this.conversation.replaceChildren();
      this.prompt.focus();
    });
    for (const button of this.form.querySelectorAll("[data-example]")) {
      button.addEventListener("click", () => this.setTools(EXAMPLES[button.dataset.example]));
    }
    this.toolsJson.addEventListener("input", () => this.readTools());
    this.setTools(EXAMPLES.weather);
  }

  setModel(model) {
    this.model = model;
    this.modelLabel.textContent = model ? `· ${model.id}` : "· no model";
    this.sendButton.disabled = !model || !!this.controller;
  }

  setTools(tools) {
    this.toolsJson.value = JSON.stringify(tools, null, 2);
    this.readTools();
  }

  /** The tools in the editor, or null when they are not a JSON array of tools. */
  readTools() {
    let tools = null;
    try {
      const value = JSON.parse(this.toolsJson.value || "[]");
      if (!Array.isArray(value)) throw new Error("the tools must be a JSON array");
      for (const tool of value) {
        if (!tool?.function?.name) throw new Error("each tool needs function.name");
      }
      tools = value;
      this.toolsError.hidden = true;
    } catch (error) {
      this.toolsError.textContent = error.message;
      this.toolsError.hidden = false;
    }
    const names = (tools || []).map((t) => t.function.name);
    this.toolsCount.textContent = String(names.length);
    const chosen = this.toolChoice.value;
    this.toolChoice.replaceChildren(
      ...["auto", "none", "required"].map((v) => el("option", { value: v }, v)),
      ...names.map((n) => el("option", { value: `function:${n}` }, `function: ${n}`)),
    );
    this.toolChoice.value = [...this.toolChoice.options].some((o) => o.value === chosen) ? chosen : "auto";
    return tools;
  }

  submit() {
    const text = this.prompt.value.trim();
    if (!text || !this.model || this.controller) return;
    if (this.pendingResults) {
      // A conversation with unanswered calls is refused by OpenAI-style servers.
      this.pendingResults.focus();
      return;
    }
    if (this.useTools.checked && this.readTools() === null) {
      this.form.querySelector("#tools-editor").open = true;
      this.toolsJson.focus();
      return;
    }
    this.prompt.value = "";
    this.push({ role: "user", content: text });
    this.run();
  }

  push(message) {
    this.messages.push(message);
    if (message.role === "user") {
      this.conversation.append(el("li", { class: "turn user" },
        el("div", { class: "who" }, "you"), el("div", { class: "content" }, message.content)));
    } else if (message.role === "tool") {
      this.conversation.append(el("li", { class: "turn tool" },
        el("div", { class: "who" }, `tool result · ${message.name || message.tool_call_id}`),
        el("pre", { class: "content" }, message.content)));
    }
  }

  request() {
    const body = {
      model: this.model.id,
      messages: this.messages,
      stream: true,
      stream_options: { include_usage: true },
    };
    const maxTokens = Number.parseInt(this.maxTokens.value, 10);
    if (maxTokens > 0) body.max_tokens = maxTokens;
    const temperature = Number.parseFloat(this.temperature.value);
    if (temperature >= 0) body.temperature = temperature;
    const tools = this.useTools.checked ? this.readTools() : null;
    if (tools && tools.length) {
      body.tools = tools;
      const choice = this.toolChoice.value;
      body.tool_choice = choice.startsWith("function:")
        ? { type: "function", function: { name: choice.slice(9) } }
        : choice;
    }
    return body;
  }

  /** A model's context length, asked of the server when the model was not loaded before. */
  async contextLength(id) {
    const known = this.model?.id === id && this.model.plugboard?.context_length;
    if (known) return known;
    try {
      const { data } = await getJson("/v1/models");
      return data.find((m) => m.id === id)?.plugboard?.context_length || null;
    } catch {
      return null;
    }
  }

  /** One request and its streamed answer. */
  async run() {
    if (this.controller) return;
    const epoch = this.epoch;
    const turn = new AssistantTurn(this.model);
    this.conversation.append(turn.node);
    this.controller = new AbortController();
    this.sendButton.disabled = true;
    this.stop.disabled = false;
    const started = performance.now();
    try {
      for await (const chunk of postStream("/v1/chat/completions", this.request(), this.controller.signal)) {
        if (chunk.error) throw new Error(chunk.error.message || "the server failed");
        const c = this.conversation;
        const following = c.scrollHeight - c.scrollTop - c.clientHeight < 40;
        turn.take(chunk, performance.now() - started);
        // Follow the reply unless the user scrolled up to read.
        if (following) c.scrollTop = c.scrollHeight;
      }
      if (!turn.finishReason) throw new Error("the reply ended early: the server closed the stream");
      turn.finish(await this.contextLength(turn.model.id));
    } catch (error) {
      turn.fail(error.name === "AbortError" ? "stopped" : error.message);
    } finally {
      this.controller = null;
      this.stop.disabled = true;
      this.sendButton.disabled = !this.model;
      this.onReplyEnd?.();
    }
    if (epoch !== this.epoch) return;
    const message = turn.message();
    if (message) this.messages.push(message);
    if (turn.calls.length && !turn.failed) {
      this.pendingResults = turn.askForResults((results) => {
        this.pendingResults = null;
        for (const result of results) this.push(result);
        this.run();
      });
    } else {
      this.prompt.focus();
    }
  }
}

/** One assistant reply as it streams in. */
class AssistantTurn {
  constructor(model) {
    this.model = model;
    this.content = "";
    this.reasoning = "";
    this.calls = [];
    this.failed = false;
    this.firstTokenMs = null;
    this.usage = null;
    this.timings = null;
    this.plugboard = null;
    this.contentNode = el("div", { class: "content" });
    this.reasoningText = el("div", { class: "content" });
    this.reasoningNode = el("details", { class: "reasoning", hidden: true },
      el("summary", {}, "Reasoning"), this.reasoningText);
    this.callsNode = el("div", { class: "calls" });
    this.problemsNode = el("ul", { class: "problems", hidden: true });
    this.servedNode = el("div", { class: "served" });
    this.perfNode = el("dl", { class: "perf", hidden: true });
    this.contextNode = el("div", { class: "context-bar", hidden: true, role: "img" });
    this.node = el("li", { class: "turn assistant", "aria-busy": "true" },
      el("div", { class: "who" }, `assistant · ${model.id}`),
      this.reasoningNode, this.contentNode, this.callsNode, this.problemsNode,
      this.servedNode, this.perfNode, this.contextNode);
  }

  take(chunk, elapsedMs) {
    for (const choice of chunk.choices || []) {
      const delta = choice.delta || {};
      if ((delta.content || delta.reasoning_content || delta.tool_calls) && this.firstTokenMs === null) {
        this.firstTokenMs = elapsedMs;
      }
      if (delta.reasoning_content) {
        this.reasoning += delta.reasoning_content;
        this.reasoningText.textContent = this.reasoning;
        this.reasoningNode.hidden = false;
      }
      if (delta.content) {
        this.content += delta.content;
        this.contentNode.textContent = this.content;
      }
      for (const part of delta.tool_calls || []) this.takeCall(part);
      if (choice.finish_reason) this.finishReason = choice.finish_reason;
    }
    if (chunk.usage) this.usage = chunk.usage;
    if (chunk.timings) this.timings = chunk.timings;
    if (chunk.plugboard) this.plugboard = chunk.plugboard;
  }

  takeCall(part) {
    // By index; a piece without one continues the last call.
    const index = part.index ?? (this.calls.length ? this.calls[this.calls.length - 1].index : 0);
    let call = this.calls.find((c) => c.index === index);
    if (!call) {
      call = { index, id: part.id, name: "", arguments: "" };
      call.nameNode = el("span", { class: "name" });
      call.argsNode = el("pre", { class: "arguments" });
      call.node = el("div", { class: "call", dataset: { index: String(this.calls.length) } },
        el("span", { class: "muted" }, "tool call "), call.nameNode, call.argsNode);
      this.calls.push(call);
      this.callsNode.append(call.node);
    }
    if (part.id) call.id = part.id;
    if (part.function?.name) {
      call.name += part.function.name;
      call.nameNode.textContent = call.name;
      call.node.dataset.name = call.name;
    }
    if (part.function?.arguments) {
      call.arguments += part.function.arguments;
      call.argsNode.textContent = call.arguments;
    }
  }

  /** The stream ended: `contextLength` is the model's, read now (a model loaded by this
   * request had none before). */
  finish(contextLength) {
    this.node.removeAttribute("aria-busy");
    for (const call of this.calls) {
      try {
        call.argsNode.textContent = JSON.stringify(JSON.parse(call.arguments || "{}"), null, 2);
        call.node.dataset.validJson = "true";
      } catch {
        call.node.dataset.validJson = "false";
        call.node.append(el("div", { class: "error" }, "the arguments are not valid JSON"));
      }
    }
    const problems = this.plugboard?.problems || [];
    if (problems.length) {
      this.problemsNode.replaceChildren(...problems.map((p) =>
        el("li", { class: "problem", dataset: { kind: p.kind } },
          `warning: ${p.kind}: ${p.message}`)));
      this.problemsNode.hidden = false;
    }
    this.showServed();
    this.showPerformance(contextLength);
  }

  fail(message) {
    this.failed = true;
    this.node.removeAttribute("aria-busy");
    this.node.classList.add("failed");
    this.node.append(el("div", { class: "error", role: "alert" }, message));
    this.showServed();
  }

  showServed() {
    const p = this.plugboard;
    if (!p) return;
    const attempts = p.attempts || [];
    const served = attempts.find((a) => a.outcome === "served");
    const fallbacks = attempts.filter((a) => a.outcome !== "served")
      .map((a) => `${a.model} (${a.reason || a.outcome})`);
    this.servedNode.replaceChildren(
      "served by adapter ",
      el("code", { class: "adapter-version" }, p.adapter || "—"),
      served ? ` · ${served.model} on ${served.backend}` : "",
      fallbacks.length ? ` · after ${fallbacks.join(", ")}` : "",
      this.finishReason ? ` · finish: ${this.finishReason}` : "");
    this.node.dataset.adapter = p.adapter || "";
  }

  showPerformance(context) {
    const t = this.timings || {};
    const server = this.plugboard?.timings || {};
    const queueMs = server.queue_ms;
    // Nothing visible streamed (a call held and then dropped): the server's own first token.
    const firstTokenMs = this.firstTokenMs ?? (Number.isFinite(server.prefill_ms)
      ? (queueMs || 0) + server.prefill_ms : null);
    const cached = t.cache_n ?? this.usage?.prompt_tokens_details?.cached_tokens;
    const metrics = [
      ["ttft_ms", "first token", firstTokenMs, "ms", 0],
      ["queue_ms", "queue", queueMs, "ms", 0],
      ["prefill_tps", "prefill", t.prompt_per_second, "tok/s", 1],
      ["decode_tps", "decode", t.predicted_per_second, "tok/s", 1],
      ["prompt_tokens", "prompt", this.usage?.prompt_tokens ?? t.prompt_n, "tok", 0],
      ["cached_tokens", "cached", cached, "tok", 0],
      ["completion_tokens", "completion", this.usage?.completion_tokens ?? t.predicted_n, "tok", 0],
    ];
    this.perfNode.replaceChildren(...metrics.map(([key, label, value, unit, digits]) =>
      el("div", {},
        el("dt", {}, label),
        el("dd", { dataset: { metric: key, value: Number.isFinite(value) ? String(value) : "" } },
          Number.isFinite(value) ? `${number(value, digits)} ${unit}` : "—"))));
    this.perfNode.hidden = false;
    const prompt = this.usage?.prompt_tokens;
    const completion = this.usage?.completion_tokens;
    if (context && Number.isFinite(prompt) && Number.isFinite(completion)) {
      // Widths through the CSSOM: the page's CSP allows no inline style attributes.
      const bar = (kind, n) => {
        const part = el("span", { class: kind });
        part.style.width = `${Math.min(100, (100 * n) / context).toFixed(2)}%`;
        return part;
      };
      this.contextNode.replaceChildren(bar("prompt", prompt), bar("completion", completion));
      const label = `context: ${prompt} prompt + ${completion} completion of ${context} tokens`;
      this.contextNode.setAttribute("aria-label", label);
      this.contextNode.title = label;
      this.contextNode.hidden = false;
    }
  }

  /** The reply as a message of the conversation. */
  message() {
    // A reply that failed keeps its text but not its calls: they may be cut, and are unanswered.
    const calls = this.failed ? [] : this.calls;
    if (!this.content && !calls.length) return null;
    const message = { role: "assistant", content: this.content || null };
    if (calls.length) {
      message.tool_calls = calls.map((c) => ({
        id: c.id, type: "function", function: { name: c.name, arguments: c.arguments },
      }));
    }
    return message;
  }

  /** A result box under each call and one button that sends them all back; returns the
   * first box. */
  askForResults(send) {
    const boxes = this.calls.map((call) => {
      const box = el("textarea", { rows: 2, class: "result", placeholder: `Result of ${call.name}, e.g. {"temperature": 18}`,
        "aria-label": `Result of ${call.name}` });
      call.node.append(box);
      return box;
    });
    const button = el("button", { type: "button", class: "primary send-results", onclick: () => {
      button.disabled = true;
      for (const box of boxes) box.disabled = true;
      send(this.calls.map((call, i) => ({
        role: "tool", tool_call_id: call.id, name: call.name, content: boxes[i].value || "{}",
      })));
    } }, "Send results and continue");
    this.callsNode.append(el("div", { class: "row" }, button));
    boxes[0]?.focus();
    return boxes[0];
  }
}
