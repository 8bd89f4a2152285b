// Embeddings: texts, one per line, and their cosine-similarity matrix as a heat map.

import { fillModelSelect, getJSON, say } from "./api.js";

const $ = (id) => document.getElementById(id);

export function init() {
  $("emb-form").addEventListener("submit", (event) => {
    event.preventDefault();
    compare();
  });
}

export async function show() {
  try {
    await fillModelSelect($("emb-model"), "embeddings");
  } catch (err) {
    say($("emb-status"), err.message, true);
  }
}

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / (Math.sqrt(na * nb) || 1);
}

// -1 … 1 as a colour from pale to a strong blue; text stays dark on it.
function heat(value) {
  const t = Math.max(0, Math.min(1, value));
  return `hsl(${220 - t * 10} 85% ${95 - t * 45}%)`;
}

async function compare() {
  const texts = $("emb-texts").value.split("\n").map((t) => t.trim()).filter(Boolean);
  if (texts.length < 2) {
    say($("emb-status"), "Give at least two lines of text.", true);
    return;
  }
  say($("emb-status"), "Embedding…");
  let result;
  try {
    result = await getJSON("/v1/embeddings", { json: { model: $("emb-model").value, input: texts } });
  } catch (err) {
    say($("emb-status"), err.message, true);
    return;
  }
  const vectors = result.data.sort((a, b) => a.index - b.index).map((d) => d.embedding);
  render(texts, vectors);
  say($("emb-status"), `${vectors.length} vectors of ${vectors[0].length} dimensions; ${result.usage?.prompt_tokens ?? "?"} tokens.`);
}

function render(texts, vectors) {
  const table = document.createElement("table");
  table.className = "heat";
  const caption = table.createCaption();
  caption.textContent = "Cosine similarity";
  const head = table.createTHead().insertRow();
  head.append(document.createElement("td"));
  texts.forEach((text, i) => {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = `${i + 1}`;
    th.title = text;
    head.append(th);
  });
  const body = table.createTBody();
  vectors.forEach((a, i) => {
    const row = body.insertRow();
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = `${i + 1}. ${texts[i]}`;
    th.title = texts[i];
    row.append(th);
    vectors.forEach((b, j) => {
      const value = cosine(a, b);
      const cell = row.insertCell();
      cell.textContent = value.toFixed(3);
      cell.dataset.row = i;
      cell.dataset.col = j;
      cell.dataset.sim = value;
      cell.style.background = heat(value);
    });
  });
  $("emb-result").replaceChildren(table);
}
