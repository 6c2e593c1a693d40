// domain-llm web UI: the playground talks to the same API as any client (/v1/chat/completions streamed,
// /api/v1/ask, /api/v1/rerank, /api/v1/feedback); model text and passages are only ever set through textContent, never parsed as HTML.
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
  // The chat's model and the Ask tab's (sent as `domain`, which takes the same ids) offer the same choices.
  for (const select of [$("model-select"), $("ask-model")]) {
    if (!select) continue;
    select.textContent = "";
    for (const id of (ids.length > 1 ? ["auto", ...ids] : [modelId])) {
      const option = document.createElement("option");
      option.value = id;
      option.textContent = id;
      select.append(option);
    }
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
  const body = requestBody();
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body), signal: controller.signal,
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
    if ($("transcript").dataset.feedback) {
      out.parentElement.append(feedbackBar({ question: text, answer, domain: domain || "base",
        system: (body.messages[0].role === "system" && body.messages[0].content) || null }));
    }
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

// ---- feedback: 👍/👎 under each answer, kept by the server for preference tuning (POST /api/v1/feedback) -------
// `feedback`: the user's message, the answer as shown, the domain that answered (the stream's `domain`; `base` for
// the base model) and the system prompt sent (null: the server's default).
function feedbackBar(feedback) {
  const bar = element("div", "feedback");
  const status = element("span", "feedback-status muted");
  // The words too: a browser without an emoji font still shows what each button means.
  const buttons = [[true, "👍 Good", "good answer"], [false, "👎 Bad", "bad answer"]].map(([label, text, name]) => {
    const button = element("button", "vote", text);
    button.type = "button";
    button.title = name;
    button.setAttribute("aria-label", name);
    button.dataset.label = label ? "good" : "bad";
    button.addEventListener("click", () => sendFeedback(bar, buttons, button, status, { ...feedback, label }));
    return button;
  });
  bar.append(...buttons, status);
  return bar;
}

async function sendFeedback(bar, buttons, chosen, status, feedback) {
  buttons.forEach((b) => { b.disabled = true; });
  status.textContent = "…";
  try {
    const response = await fetch("/api/v1/feedback", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(feedback),
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    chosen.classList.add("chosen");
    status.textContent = "Thanks!";
    bar.dataset.sent = chosen.dataset.label;
  } catch (e) {
    buttons.forEach((b) => { b.disabled = false; });
    status.textContent = "Not saved: " + e.message;
    bar.dataset.sent = "error";
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

// ---- ask: a grounded answer with numbered citations -------------------------------------------------------
// The server removes citation numbers no passage has and lists them in invalid_citations; the page says so, and
// flags any [n] still in the text without a passage (an older server, a proxy) the same way.
const CITATION = /\[(\d{1,3})\]/g;
let asking = false;

// A new element whose text is set as text, never parsed as HTML.
function element(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function citeButton(n) {
  const button = element("button", "cite", `[${n}]`);
  button.type = "button";
  button.dataset.n = n;
  button.title = `show passage ${n}`;
  button.setAttribute("aria-controls", "ask-passage-" + n);
  button.addEventListener("click", () => revealPassage(n));
  return button;
}

function revealPassage(n) {
  const item = $("ask-passage-" + n);
  if (!item) return;
  document.querySelectorAll("#ask-passages li.shown").forEach((li) => li.classList.remove("shown"));
  item.classList.add("shown");
  item.querySelector("details").open = true;
  item.scrollIntoView({ block: "nearest" });
}

// The answer as text nodes and citation elements; returns the numbers it cites that no passage has.
function renderAnswer(target, answer, numbers) {
  target.textContent = "";
  const missing = [];
  let last = 0;
  for (const match of answer.matchAll(CITATION)) {
    target.append(answer.slice(last, match.index));
    const n = Number(match[1]);
    if (numbers.has(n)) {
      target.append(citeButton(n));
    } else {
      const flagged = element("span", "cite invalid", match[0]);
      flagged.title = `no passage ${n} was given`;
      target.append(flagged);
      missing.push(n);
    }
    last = match.index + match[0].length;
  }
  target.append(answer.slice(last));
  return missing;
}

function passageItem(citation, cited) {
  const item = element("li", cited ? "cited" : "");
  item.id = "ask-passage-" + citation.number;
  item.value = citation.number;
  const reranked = typeof citation.rerank_score === "number" ? ` · reranker ${citation.rerank_score.toFixed(2)}` : "";
  const summary = element("summary", "");
  summary.append(element("span", "title", `[${citation.number}] ${citation.title}`), " ",
    element("span", "source", `${citation.doc_id} · score ${Number(citation.score).toFixed(3)}${reranked}`));
  if (cited) summary.append(" ", element("span", "badge", "cited"));
  const details = element("details", "");
  details.append(summary, element("p", "passage", citation.chunk));
  item.append(details);
  return item;
}

function showAnswer(body) {
  const citations = body.citations || [];
  const numbers = new Set(citations.map((c) => c.number));
  const missing = renderAnswer($("ask-answer"), body.answer || "", numbers);
  $("ask-passages").textContent = "";
  const cited = new Set(body.cited || []);
  for (const citation of citations) $("ask-passages").append(passageItem(citation, cited.has(citation.number)));
  const removed = body.invalid_citations || [];
  const invalid = [...new Set([...removed, ...missing])].sort((a, b) => a - b);
  const brackets = (numbers) => numbers.map((n) => `[${n}]`).join(", ");
  const note = $("ask-invalid");
  note.hidden = invalid.length === 0;
  note.textContent = "";
  if (invalid.length) {
    const given = citations.length === 1 ? "only 1 passage was given" : `only ${citations.length} passages were given`;
    note.textContent = `⚠ The model cited ${brackets(invalid)} but ${given}` +
      (removed.length ? `; the server removed ${brackets(removed)} from the answer.` : ".");
  }
  $("ask-answer").classList.toggle("has-invalid", invalid.length > 0);
  const retrieval = body.retrieval || {};
  const how = [retrieval.mode, retrieval.reranked ? "reranked" : "",
    retrieval.passages_dropped ? `${retrieval.passages_dropped} dropped to fit the context` : ""].filter(Boolean);
  $("ask-status").textContent = `${citations.length} passage${citations.length === 1 ? "" : "s"} ` +
    `(${how.join(", ")}) · ${(body.usage || {}).completion_tokens} tokens · finish: ${body.finish_reason}` +
    (body.domain ? ` · domain: ${body.domain}` : "");
  $("ask-result").hidden = false;
}

// Why the tab cannot answer: no /ask route (no index configured: 404) or no usable index (503).
function askUnavailable(status, message) {
  const notice = $("ask-unavailable");
  notice.hidden = false;
  notice.textContent = status === 404
    ? "Ask is not available: this server has no document index (serve.index), so /api/v1/ask is not served."
    : "Ask is not available right now: " + message;
}

async function ask(event) {
  event.preventDefault();
  const question = $("ask-question").value.trim();
  if (!question || asking) return;
  asking = true;
  $("ask-button").disabled = true;
  $("ask-status").textContent = "retrieving and answering…";
  delete $("ask-status").dataset.done;
  $("ask-result").hidden = true;
  const body = { question, top_k: numberOrNull("ask-top-k"), max_tokens: numberOrNull("ask-max-tokens"),
    temperature: numberOrNull("ask-temperature") };
  if ($("ask-model").value) body.domain = $("ask-model").value;
  for (const key of Object.keys(body)) if (body[key] === null) delete body[key];
  try {
    const response = await fetch("/api/v1/ask", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (!response.ok) {
      const message = await errorMessage(response);
      // A 404 naming a field is a domain this server does not serve, not a missing route.
      if (response.status === 503 || (response.status === 404 && !message.startsWith("domain"))) {
        askUnavailable(response.status, message);
        $("ask-status").textContent = "";
      } else {
        $("ask-status").textContent = "Error: " + message;
      }
      $("ask-status").dataset.done = "error";
      return;
    }
    showAnswer(await response.json());
    $("ask-unavailable").hidden = true;
    $("ask-status").dataset.done = "answer";
  } catch (e) {
    $("ask-status").textContent = "Error: " + e.message;
    $("ask-status").dataset.done = "error";
  } finally {
    asking = false;
    $("ask-button").disabled = false;
  }
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
  if ($("ask-form")) {
    $("ask-form").addEventListener("submit", ask);
    $("ask-question").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("ask-form").requestSubmit(); }
    });
  }
  if ($("rerank-form")) $("rerank-form").addEventListener("submit", rerank);
  if ($("login-form")) $("login-form").addEventListener("submit", signIn);
  if ($("sign-out")) $("sign-out").addEventListener("click", signOut);
});
