"""The image's launcher: what /start.sh decides (start.py, settings.py, user.py, compat.py), the Gunicorn
worker and Uvicorn protocol (workers.py, protocol.py), and what every request and process reports
(observe.py, metrics.py, logs.py, output.py). docs/design.md has the map."""
