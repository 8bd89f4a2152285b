"""The web console's static files (static/), served at /ui by modelserve.api.console."""
