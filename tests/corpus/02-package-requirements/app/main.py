import os

import humanize
from fastapi import FastAPI

app = FastAPI(title="inventory")


@app.get("/")
def index():
    return {"size": humanize.naturalsize(1_000_000)}


@app.get("/whoami")
def whoami():
    return {"uid": os.getuid()}
