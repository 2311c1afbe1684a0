"""Configuration logic of the image: small pure functions, used by gunicorn_conf.py and start.sh."""
