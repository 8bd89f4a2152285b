"""OpenAI's Responses API (`/v1/responses`) over the chat core: wire types (protocol.py), the
request as a turn (convert.py), the result and events as the Response object and its typed
event stream (surface.py), stored responses (store.py) and the routes (routes.py)."""
