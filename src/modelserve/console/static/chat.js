// Chat playground: streamed answers (SSE), stop, sampling, images, JSON schema and tools.
// The conversation lives in this page only.

import { ApiError, dataURL, fillModelSelect, listModels, say, streamEvents } from "./api.js";

const $ = (id) => document.getElementById(id);
let messages = [];  // the conversation as sent to the API
let controller = null;

export function init() {
  $("chat-mode").addEventListener("change", () => {
    $("chat-schema-box").hidden = $("chat-mode").value !== "json_schema";
    $("chat-tools-box").hidden = $("chat-mode").value !== "tools";
  });
  $("chat-input-form").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      send();
    }
  });
  $("chat-stop").addEventListener("click", () => controller?.abort());
  $("chat-clear").addEventListener("click", () => {
    controller?.abort();
    messages = [];
    $("chat-log").replaceChildren();
    say($("chat-status"), "");
  });
  $("chat-model").addEventListener("change", showVision);
}

export async function show() {
  try {
    await fillModelSelect($("chat-model"), "chat");
    await showVision();
  } catch (err) {
    say($("chat-status"), err.message, true);
  }
}

async function showVision() {
  const model = (await listModels()).find((m) => m.id === $("chat-model").value);
  const vision = Boolean(model?.vision);
  $("chat-image").disabled = !vision;
  $("chat-image").title = vision ? "" : "This model takes no images";
}

function bubble(role, text = "") {
  const item = document.createElement("li");
  item.className = `msg ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "You" : "Assistant";
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  item.append(who, body);
  $("chat-log").append(item);
  return item;
}

function number(id) {
  const value = $(id).value.trim();
  return value === "" ? undefined : Number(value);
}

// The request's options from the side form; throws on JSON the user mistyped.
function options() {
  const body = {
    temperature: number("chat-temperature"), top_p: number("chat-top-p"),
    max_tokens: number("chat-max-tokens"), seed: number("chat-seed"),
  };
  const mode = $("chat-mode").value;
  if (mode === "json_schema") {
    let schema;
    try {
      schema = JSON.parse($("chat-schema").value);
    } catch (err) {
      throw new Error(`The JSON schema does not parse: ${err.message}`);
    }
    body.response_format = { type: "json_schema", json_schema: { name: "answer", schema, strict: true } };
  } else if (mode === "tools") {
    try {
      body.tools = JSON.parse($("chat-tools").value);
      body.tool_choice = $("chat-tool-choice").value;
    } catch (err) {
      throw new Error(`The tools JSON does not parse: ${err.message}`);
    }
  }
  return body;
}

async function userMessage(text) {
  const files = [...$("chat-image").files];
  if (files.length === 0 || $("chat-image").disabled) return { role: "user", content: text };
  const parts = text ? [{ type: "text", text }] : [];
  for (const file of files) parts.push({ type: "image_url", image_url: { url: await dataURL(file) } });
  return { role: "user", content: parts };
}

function showUser(message) {
  const item = bubble("user", typeof message.content === "string" ? message.content
    : message.content.filter((p) => p.type === "text").map((p) => p.text).join("\n"));
  if (Array.isArray(message.content)) {
    for (const part of message.content.filter((p) => p.type === "image_url")) {
      const img = document.createElement("img");
      img.src = part.image_url.url;
      img.alt = "attached image";
      item.append(img);
    }
  }
}

function busy(on) {
  $("chat-send").disabled = on;
  $("chat-stop").disabled = !on;
}

async function send() {
  const text = $("chat-input").value.trim();
  if (controller || (!text && $("chat-image").files.length === 0)) return;
  const model = $("chat-model").value;
  if (!model) {
    say($("chat-status"), "No chat model is available.", true);
    return;
  }
  let extra;
  try {
    extra = options();
  } catch (err) {
    say($("chat-status"), err.message, true);
    return;
  }
  const message = await userMessage(text);
  messages.push(message);
  showUser(message);
  $("chat-input").value = "";
  $("chat-image").value = "";
  const system = $("chat-system").value.trim();
  const body = {
    model, stream: true, stream_options: { include_usage: true }, ...extra,
    messages: system ? [{ role: "system", content: system }, ...messages] : messages,
  };
  await answer(body);
}

async function answer(body) {
  const item = bubble("assistant");
  item.setAttribute("aria-busy", "true");
  const textEl = item.querySelector(".text");
  const calls = [];
  let content = "";
  let usage = null;
  let firstAt = null;
  let stopped = false;
  const started = performance.now();
  controller = new AbortController();
  busy(true);
  say($("chat-status"), "Answering…");
  try {
    await streamEvents("/v1/chat/completions", body, controller.signal, (event) => {
      if (event.error) throw new ApiError(0, event.error.message || JSON.stringify(event.error));
      if (event.usage) usage = event.usage;
      const delta = event.choices?.[0]?.delta;
      if (!delta) return;
      if (delta.content || delta.tool_calls || delta.reasoning_content) firstAt ??= performance.now();
      if (delta.content) {
        content += delta.content;
        textEl.textContent = content;
      }
      for (const call of delta.tool_calls || []) {
        const known = calls[call.index] ??= { id: call.id, type: "function", function: { name: "", arguments: "" } };
        if (call.function?.name) known.function.name = call.function.name;
        if (call.function?.arguments) known.function.arguments += call.function.arguments;
      }
      if (calls.length) showCalls(item, calls);
      $("chat-log").scrollTop = $("chat-log").scrollHeight;
    });
  } catch (err) {
    if (err.name === "AbortError") stopped = true;
    else {
      say($("chat-status"), err.message, true);
      item.classList.add("failed");
    }
  } finally {
    controller = null;
    busy(false);
    item.removeAttribute("aria-busy");
  }
  const reply = { role: "assistant", content: content || null };
  if (calls.length) reply.tool_calls = calls;
  if (content || calls.length) messages.push(reply);
  showMeta(item, { usage, started, firstAt, stopped });
  if (stopped) say($("chat-status"), "Stopped.");
  else if (!item.classList.contains("failed")) say($("chat-status"), "");
}

function showCalls(item, calls) {
  let pre = item.querySelector("pre.calls");
  if (!pre) {
    pre = document.createElement("pre");
    pre.className = "calls";
    item.append(pre);
  }
  pre.textContent = calls.map((c) => `tool call ${c.function.name}(${c.function.arguments})`).join("\n");
}

function showMeta(item, { usage, started, firstAt, stopped }) {
  const now = performance.now();
  const parts = [];
  if (stopped) parts.push("stopped");
  if (firstAt !== null) parts.push(`TTFT ${((firstAt - started) / 1000).toFixed(2)} s`);
  if (usage) {
    parts.push(`${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens`);
    const seconds = firstAt !== null ? (now - firstAt) / 1000 : 0;
    if (seconds > 0 && usage.completion_tokens > 1) {
      parts.push(`${((usage.completion_tokens - 1) / seconds).toFixed(1)} tok/s`);
    }
  }
  if (!parts.length) return;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = parts.join(" · ");
  item.append(meta);
}
