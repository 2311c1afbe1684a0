import getpass
import os

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def read_root():
    return {"user": getpass.getuser()}


@app.get("/whoami")
def whoami():
    return {"uid": os.getuid()}
