// Wires the page: the model selector, the chat and the adapters panel, kept current by the
// server's event stream (`GET /v1/events`), and the API key when the server asks for one.

import { hasApiKey, openStream, setApiKey } from "./api.js";
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
// A reply changes its model's state (busy, idle, when it unloads): no event says so.
chat.onReplyEnd = () => models.refresh().catch(report);

/** How long to wait before listening again after the event stream broke. */
const RECONNECT_MS = 2000;

function status(state, text) {
  const pill = $("connection");
  pill.dataset.state = state;
  pill.textContent = text;
}

/** A 401 asks for a key; a 403 on an admin route means the key is for inference only. */
function report(error) {
  if (error.status === 401) {
    $("key-form").hidden = false;
    status("lost", hasApiKey() ? "key refused" : "needs an API key");
    return;
  }
  status("lost", `error: ${error.message}`);
}

/** Reads the whole state again: at start, after a resync, after a reconnect. */
async function reload() {
  await Promise.all([
    models.refresh(),
    adapters.refresh().catch((error) => {
      if (error.status === 403) adapters.unavailable(error.message);
      else throw error;
    }),
  ]);
}

function handle(type, event) {
  adapters.logEvent(event);
  if (type.startsWith("adapter_")) {
    adapters.changed(event.adapter);
    Promise.all([adapters.refresh(), models.refresh()]).catch(report);
  } else if (type === "resync") {
    reload().catch(report);
  } else if (type !== "pull_progress") {
    models.refresh().catch(report);
  }
}

/** Follows `/v1/events` for good: reloads the state on each (re)connection, so nothing that
 * happened while it was down is missed. */
async function listen() {
  for (;;) {
    try {
      const events = await openStream("/v1/events");
      await reload();
      status("live", "live");
      for await (const { event, data } of events) handle(event, data);
      status("lost", "reconnecting…");
    } catch (error) {
      if (error.status === 401) return report(error);
      if (error.status === 403) {
        // An inference-only key: no events, but the models and the chat work.
        adapters.unavailable(error.message);
        await models.refresh().catch(report);
        return status("live", "live (no events: the key is not an admin key)");
      }
      report(error);
      // The models and the chat work without the event stream.
      models.refresh().catch(() => {});
    }
    await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
  }
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setApiKey($("api-key").value.trim());
  $("api-key").value = "";
  $("key-form").hidden = true;
  status("connecting", "connecting…");
  listen();
});

listen();
