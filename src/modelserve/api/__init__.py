"""The OpenAI-compatible HTTP layer: wire types, thin routers, error envelope."""
