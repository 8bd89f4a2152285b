"""The chat engine: continuous batching over one llama.cpp context. Knows nothing of HTTP."""
