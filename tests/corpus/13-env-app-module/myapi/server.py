import os

from fastapi import FastAPI

api = FastAPI()


@api.get("/")
def read_root():
    return {"module": __name__}


@api.get("/whoami")
def whoami():
    return {"uid": os.getuid()}
