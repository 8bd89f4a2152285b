"""Benchmark clients for any OpenAI-compatible server."""
