// Wires the page: the model selector, the chat and the adapters panel, kept current by the
// server's event stream (`GET /v1/events`).

import { Models } from "./models.js";
import { Chat } from "./chat.js";
import { Adapters } from "./adapters.js";

const $ = (id) => document.getElementById(id);

const chat = new Chat({
  conversation: $("conversation"),
  form: $("composer"),
  prompt: $("prompt"),
  sendButton: $("send"),
  stop: $("stop"),
  clear: $("clear"),
  toolChoice: $("tool-choice"),
  useTools: $("use-tools"),
  maxTokens: $("max-tokens"),
  temperature: $("temperature"),
  toolsJson: $("tools-json"),
  toolsError: $("tools-error"),
  toolsCount: $("tools-count"),
  modelLabel: $("chat-model"),
});
const models = new Models($("models"), (model) => chat.setModel(model));
const adapters = new Adapters($("adapters"), $("events"));

const EVENT_TYPES = [
  "adapter_swapped", "adapter_rejected", "adapter_removed", "model_loaded", "model_unloaded",
  "pull_progress", "pull_done", "fallback_taken", "resync",
];

/** Reads the whole state again: at start, after a resync, after a reconnect. */
async function reload() {
  await Promise.all([models.refresh(), adapters.refresh()]);
}

function report(error) {
  const pill = $("connection");
  pill.dataset.state = "lost";
  pill.textContent = `error: ${error.message}`;
}

function listen() {
  const source = new EventSource("/v1/events");
  const pill = $("connection");
  source.addEventListener("open", () => {
    pill.dataset.state = "live";
    pill.textContent = "live";
    // Whatever happened while the stream was down is read afresh.
    reload().catch(report);
  });
  source.addEventListener("error", () => {
    pill.dataset.state = "lost";
    pill.textContent = "reconnecting…";
  });
  for (const type of EVENT_TYPES) {
    source.addEventListener(type, (message) => {
      const event = JSON.parse(message.data);
      adapters.logEvent(event);
      if (type.startsWith("adapter_")) {
        adapters.changed(event.adapter);
        Promise.all([adapters.refresh(), models.refresh()]).catch(report);
      } else if (type === "resync") {
        reload().catch(report);
      } else if (type !== "pull_progress") {
        models.refresh().catch(report);
      }
    });
  }
}

listen();
