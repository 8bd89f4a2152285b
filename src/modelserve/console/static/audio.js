// Audio: an upload or a recording (MediaRecorder) -> transcript; text -> speech, played.

import { fillModelSelect, getJSON, listModels, request, say } from "./api.js";

const $ = (id) => document.getElementById(id);
let recorder = null;
let recording = null;  // the last recording, a Blob, used when no file is chosen
let speechURL = null;

export function init() {
  $("stt-form").addEventListener("submit", (event) => {
    event.preventDefault();
    transcribe();
  });
  $("stt-record").addEventListener("click", toggleRecording);
  $("stt-file").addEventListener("change", () => { recording = null; });
  $("tts-form").addEventListener("submit", (event) => {
    event.preventDefault();
    speak();
  });
  $("tts-model").addEventListener("change", fillVoices);
}

export async function show() {
  try {
    await fillModelSelect($("stt-model"), "transcription");
    await fillModelSelect($("tts-model"), "speech");
    await fillVoices();
  } catch (err) {
    say($("stt-status"), err.message, true);
  }
}

async function fillVoices() {
  const model = (await listModels()).find((m) => m.id === $("tts-model").value);
  // An unloaded voice model lists no voices yet: any name maps to its voice.
  const voices = model?.voices?.length ? model.voices : ["alloy"];
  $("tts-voice").replaceChildren(...voices.map((v) => new Option(v, v)));
}

async function toggleRecording() {
  const button = $("stt-record");
  if (recorder) {
    recorder.stop();
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    say($("stt-status"), `No microphone: ${err.message}`, true);
    return;
  }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (event) => chunks.push(event.data);
  recorder.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    recording = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
    recorder = null;
    button.setAttribute("aria-pressed", "false");
    button.textContent = "Record";
    say($("stt-status"), `Recorded ${(recording.size / 1024).toFixed(0)} KiB; press Transcribe.`);
  };
  recorder.start();
  button.setAttribute("aria-pressed", "true");
  button.textContent = "Stop recording";
  say($("stt-status"), "Recording…");
}

async function transcribe() {
  const file = $("stt-file").files[0] || recording;
  if (!file) {
    say($("stt-status"), "Choose an audio file or record one first.", true);
    return;
  }
  const form = new FormData();
  form.append("model", $("stt-model").value);
  form.append("file", file, file.name || "recording.webm");
  say($("stt-status"), "Transcribing…");
  try {
    const result = await getJSON("/v1/audio/transcriptions", { form });
    $("stt-text").textContent = result.text;
    say($("stt-status"), "");
  } catch (err) {
    say($("stt-status"), err.message, true);
  }
}

async function speak() {
  const body = { model: $("tts-model").value, voice: $("tts-voice").value,
    input: $("tts-text").value, response_format: "mp3" };
  say($("tts-status"), "Synthesizing…");
  try {
    const blob = await (await request("/v1/audio/speech", { json: body })).blob();
    if (speechURL) URL.revokeObjectURL(speechURL);
    speechURL = URL.createObjectURL(blob);
    $("tts-audio").src = speechURL;
    say($("tts-status"), "");
    await $("tts-audio").play().catch(() => {});  // autoplay may be refused: controls remain
  } catch (err) {
    say($("tts-status"), err.message, true);
  }
}
