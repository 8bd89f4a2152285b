// Images: prompt -> generated images (b64_json); with an uploaded image, an edit (multipart).

import { fillModelSelect, getJSON, say } from "./api.js";

const $ = (id) => document.getElementById(id);

export function init() {
  $("img-form").addEventListener("submit", (event) => {
    event.preventDefault();
    generate();
  });
}

export async function show() {
  try {
    await fillModelSelect($("img-model"), "images");
  } catch (err) {
    say($("img-status"), err.message, true);
  }
}

// The form's fields that were filled in, as the API names them.
function fields() {
  const out = { model: $("img-model").value, prompt: $("img-prompt").value.trim(), response_format: "b64_json" };
  const size = $("img-size").value.trim();
  if (size) out.size = size;
  for (const [id, name] of [["img-steps", "num_inference_steps"], ["img-seed", "seed"], ["img-n", "n"]]) {
    const value = $(id).value.trim();
    if (value) out[name] = Number(value);
  }
  return out;
}

async function generate() {
  const body = fields();
  if (!body.prompt) {
    say($("img-status"), "Write a prompt first.", true);
    return;
  }
  const source = $("img-source").files[0];
  say($("img-status"), source ? "Editing…" : "Generating…");
  const started = performance.now();
  let result;
  try {
    if (source) {
      const form = new FormData();
      for (const [name, value] of Object.entries(body)) form.append(name, String(value));
      form.append("strength", $("img-strength").value);
      form.append("image", source, source.name);
      result = await getJSON("/v1/images/edits", { form });
    } else {
      result = await getJSON("/v1/images/generations", { json: body });
    }
  } catch (err) {
    say($("img-status"), err.message, true);
    return;
  }
  const format = result.output_format || "png";
  const shown = result.data.map((item, i) => {
    const img = document.createElement("img");
    img.src = `data:image/${format};base64,${item.b64_json}`;
    img.alt = `${body.prompt} (${i + 1})`;
    return img;
  });
  $("img-gallery").prepend(...shown);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  say($("img-status"), `${shown.length} image(s)${result.size ? ` of ${result.size}` : ""} in ${seconds} s.`);
}
