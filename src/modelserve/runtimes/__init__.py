"""Model runtimes: each loads one kind of model file and knows nothing of HTTP."""
