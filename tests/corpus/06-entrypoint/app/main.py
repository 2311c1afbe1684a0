import os

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def read_root():
    return {"prepared": os.path.isdir("/var/run/myapp")}


@app.get("/whoami")
def whoami():
    return {"uid": os.getuid()}
