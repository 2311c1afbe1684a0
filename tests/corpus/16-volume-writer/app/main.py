import os
from pathlib import Path

from fastapi import FastAPI

DATA = Path(os.environ.get("DATA_DIR", "/data"))
app = FastAPI()


@app.post("/visit")
def visit():
    with open(DATA / "visits.txt", "a") as visits:
        visits.write("visit\n")
    return {"visits": len((DATA / "visits.txt").read_text().splitlines())}


@app.get("/whoami")
def whoami():
    return {"uid": os.getuid()}
