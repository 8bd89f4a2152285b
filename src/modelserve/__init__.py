"""modelserve: local AI model serving behind the OpenAI HTTP API."""

__version__ = "0.1.0"
