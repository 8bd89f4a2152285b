"""Who may reuse whose prompt KV. A request's salt scopes the KV it reuses and leaves behind,
in the slots and in the prompt store (engine/prompt_store.py): only requests with the same
salt share it. Without one, a tenant could time its requests to learn whether another tenant
sent a prompt (a cache hit answers its first token sooner).

The salt comes from the API key, when the model's `prompt_cache_scope` is `per_key`, and from
the client's own `cache_salt` (vLLM's field); "" is the shared scope. It is a digest: what
reaches the worker, and a spill file's header, never holds a key id or the client's salt.
"""

from __future__ import annotations

import hashlib


def cache_salt(key_id: str | None, per_key: bool, client_salt: str | None) -> str:
    parts = []
    if per_key and key_id is not None:
        parts.append(f"key:{key_id}")
    if client_salt:
        parts.append(f"salt:{client_salt}")
    if not parts:
        return ""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
