import ctypes
import os

import fastext
from fastapi import FastAPI

app = FastAPI()
counter = ctypes.CDLL("/app/libcounter.so")


@app.get("/compute/{number}")
def compute(number: int):
    return {"triple": fastext.triple(number), "bits": counter.count_bits(number)}


@app.get("/whoami")
def whoami():
    return {"uid": os.getuid()}
