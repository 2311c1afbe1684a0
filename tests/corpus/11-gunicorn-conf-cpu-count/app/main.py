import os

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def read_root():
    return {"pid": os.getpid()}


@app.get("/whoami")
def whoami():
    return {"uid": os.getuid()}
