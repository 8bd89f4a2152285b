"""Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`) over the chat core:
wire types (protocol.py), the request as a turn and the result and events as Anthropic's
message and stream (messages.py), Anthropic's error shape (errors.py)."""
