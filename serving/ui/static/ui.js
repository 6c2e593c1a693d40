// domain-llm web UI: the playground talks to the same API as any client (/v1/chat/completions streamed,
// /api/v1/rerank); model text is only ever set through textContent, never parsed as HTML.
"use strict";

function $(id) { return document.getElementById(id); }

async function errorMessage(response) {
  try {
    const body = await response.json();
    return (body.error && body.error.message) || JSON.stringify(body.detail || body);
  } catch (e) {
    return response.status + " " + response.statusText;
  }
}

function numberOrNull(id) {
  const value = $(id) && $(id).value;
  return value === "" || value === undefined ? null : Number(value);
}

// ---- tabs -------------------------------------------------------------------------------------------
function setUpTabs() {
  document.querySelectorAll(".tab").forEach((tab) => {
    tab.addEventListener("click", () => {
      document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t === tab));
      document.querySelectorAll(".tab-panel").forEach((p) => { p.hidden = p.id !== tab.dataset.tab; });
    });
  });
}

// ---- chat -------------------------------------------------------------------------------------------
const history = [];
let modelId = null;
let controller = null;

async function loadModelInfo() {
  const line = $("model-line");
  const response = await fetch("/api/v1/model/info");
  if (!response.ok) {
    line.textContent = "Model not ready: " + (await errorMessage(response)) + " (retrying)";
    setTimeout(loadModelInfo, 2000);
    return;
  }
  const info = await response.json();
  modelId = info.model_id;
  // One id per domain adapter besides the base: `auto` (the default) routes each question to its domain.
  const models = await fetch("/v1/models").then((r) => r.ok ? r.json() : { data: [] });
  const ids = (models.data || []).map((m) => m.id);
  const select = $("model-select");
  select.textContent = "";
  for (const id of (ids.length > 1 ? ["auto", ...ids] : [modelId])) {
    const option = document.createElement("option");
    option.value = id;
    option.textContent = id;
    select.append(option);
  }
  line.dataset.ready = "1";
  line.textContent = `Model ${info.model_id} · ${info.architecture || info.type || ""} ` +
    `${info.quantization || ""} · context ${info.n_ctx_per_sequence || info.n_ctx || "?"} tokens per request`;
  // What a request without a system message gets: serve.system_prompt, else the one the model was trained with.
  if ($("system-prompt").value === "" && info.default_system_prompt) {
    $("system-prompt").value = info.default_system_prompt;
  }
}

function bubble(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role;
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  div.append(who, body);
  $("transcript").append(div);
  div.scrollIntoView({ block: "end" });
  return body;
}

function requestBody() {
  const messages = [];
  const system = $("system-prompt").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...history);
  const body = {
    model: $("model-select").value || modelId || "domain-llm", messages, stream: true,
    stream_options: { include_usage: true },
    max_tokens: numberOrNull("max-tokens"), temperature: numberOrNull("temperature"),
    top_p: numberOrNull("top-p"),
  };
  const topK = numberOrNull("top-k");
  if (topK !== null) body.top_k = topK;
  const seed = numberOrNull("seed");
  if (seed !== null) body.seed = seed;
  return body;
}

async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

async function sendChat(event) {
  event.preventDefault();
  const text = $("message").value.trim();
  if (!text || controller) return;
  history.push({ role: "user", content: text });
  bubble("user", text);
  $("message").value = "";
  const out = bubble("assistant", "");
  out.classList.add("streaming");
  controller = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  $("stats").textContent = "…";
  delete $("stats").dataset.finish;
  const started = performance.now();
  let firstToken = null, finish = null, usage = null, chunks = 0, answer = "", domain = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(requestBody()), signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    await readEvents(response, (chunk) => {
      if (chunk.usage) usage = chunk.usage;
      if (chunk.domain) domain = chunk.domain;
      for (const choice of chunk.choices || []) {
        const piece = (choice.delta && choice.delta.content) || "";
        if (piece) {
          if (firstToken === null) firstToken = performance.now();
          chunks += 1;
          answer += piece;
          out.textContent = answer;
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    });
    history.push({ role: "assistant", content: answer });
    const tokens = usage ? usage.completion_tokens : chunks;
    const seconds = (performance.now() - (firstToken || started)) / 1000;
    $("stats").textContent = `${tokens} tokens · ${(tokens / Math.max(seconds, 1e-3)).toFixed(1)} tokens/s · ` +
      `first token ${(((firstToken || performance.now()) - started) / 1000).toFixed(2)} s · finish: ${finish}` +
      (domain ? ` · domain: ${domain}` : "");
    $("stats").dataset.finish = finish || "none";
  } catch (e) {
    history.pop();
    out.parentElement.classList.add("error");
    out.textContent = e.name === "AbortError" ? (answer + " [stopped]") : ("Error: " + e.message);
    $("stats").textContent = "";
    $("stats").dataset.finish = "error";
  } finally {
    out.classList.remove("streaming");
    controller = null;
    $("send").disabled = false;
    $("stop").disabled = true;
  }
}

function setUpChat() {
  if (!$("chat-form")) return;
  loadModelInfo();
  $("chat-form").addEventListener("submit", sendChat);
  $("stop").addEventListener("click", () => controller && controller.abort());
  $("clear").addEventListener("click", () => { history.length = 0; $("transcript").textContent = ""; });
  $("message").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("chat-form").requestSubmit(); }
  });
}

// ---- rerank -----------------------------------------------------------------------------------------
async function rerank(event) {
  event.preventDefault();
  const documents = $("rerank-documents").value.split("\n").map((d) => d.trim()).filter(Boolean);
  $("rerank-status").textContent = "ranking…";
  $("ranked").textContent = "";
  const response = await fetch("/api/v1/rerank", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ query: $("rerank-query").value, documents }),
  });
  if (!response.ok) { $("rerank-status").textContent = "Error: " + (await errorMessage(response)); return; }
  const body = await response.json();
  $("rerank-status").textContent = `${body.results.length} documents · ${body.reranker}`;
  for (const result of body.results) {
    const item = document.createElement("li");
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = result.score.toFixed(3);
    const text = document.createElement("span");
    text.className = "document";
    text.textContent = result.document;
    item.append(score, " ", text);
    $("ranked").append(item);
  }
}

// ---- sign-in ----------------------------------------------------------------------------------------
async function signIn(event) {
  event.preventDefault();
  const response = await fetch("/ui/login", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ api_key: $("api-key").value }),
  });
  if (response.ok) { window.location.href = "/ui"; return; }
  $("login-status").textContent = await errorMessage(response);
}

async function signOut(event) {
  event.preventDefault();
  await fetch("/ui/logout", { method: "POST" });
  window.location.href = "/ui/login";
}

document.addEventListener("DOMContentLoaded", () => {
  setUpTabs();
  setUpChat();
  if ($("rerank-form")) $("rerank-form").addEventListener("submit", rerank);
  if ($("login-form")) $("login-form").addEventListener("submit", signIn);
  if ($("sign-out")) $("sign-out").addEventListener("click", signOut);
});
