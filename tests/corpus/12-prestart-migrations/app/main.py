import os
import sqlite3

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def visit():
    db = sqlite3.connect("/app/data.db")
    db.execute("INSERT INTO visits VALUES ('/')")
    db.commit()
    (count,) = db.execute("SELECT COUNT(*) FROM visits").fetchone()
    (migrated_by,) = db.execute("SELECT uid FROM migrations").fetchone()
    return {"visits": count, "migrated_by": migrated_by, "release": os.environ.get("APP_RELEASE")}


@app.get("/whoami")
def whoami():
    return {"uid": os.getuid()}
