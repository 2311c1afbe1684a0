import os

import humanize
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def read_root():
    return {"where": os.path.dirname(humanize.__file__), "text": humanize.intcomma(1234567)}


@app.get("/whoami")
def whoami():
    return {"uid": os.getuid()}
