import os

from fastapi import FastAPI

application = FastAPI()


@application.get("/")
def read_root():
    return {"variable": "application"}


@application.get("/whoami")
def whoami():
    return {"uid": os.getuid()}
