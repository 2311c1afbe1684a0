import os

from fastapi import FastAPI

app = FastAPI()


@app.get("/health")
def health():
    return {"status": "ok"}


@app.get("/whoami")
def whoami():
    return {"uid": os.getuid()}
