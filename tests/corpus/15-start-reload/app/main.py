import os

from fastapi import FastAPI

app = FastAPI(debug=True)


@app.get("/")
def read_root():
    return {"reload": True}


@app.get("/whoami")
def whoami():
    return {"uid": os.getuid()}
