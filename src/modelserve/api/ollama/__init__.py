"""Ollama's native API (`/api/chat`, `/api/generate`, `/api/embed`, `/api/tags`, ...) over
the chat core and the embeddings pipeline: wire types (protocol.py), request options as the
core's sampling (options.py), chat and generate (chat.py), embeddings (embed.py), the model
listings (models.py, facts from GGUF headers in gguf.py), Ollama's error shape (errors.py)."""
