"""What the API process holds of each loaded model: its kind's *front* (the routes' side of
the model) over a Worker (worker/transport.py), and the kind's serving wiring (`*_SERVING`).

Cheap work runs in the front (tokenizing, templates, limits); the model's work goes to the
worker. A front is closed once the last request holding it has ended.
"""
