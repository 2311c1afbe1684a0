"""The app the operations tests serve: statuses on demand, slow and blocking requests, and a leak."""

import asyncio
import os
import time

from fastapi import FastAPI, Response

app = FastAPI()
HELD: list[bytearray] = []  # what /leak keeps: never freed, as a real leak
BALLAST = os.environ.get("OPS_BALLAST_MIB")  # memory taken at import, to make a worker big at boot
if BALLAST:
    HELD.append(bytearray(b"b" * (int(BALLAST) << 20)))


@app.get("/")
def root():
    return {"Hello": "World"}


@app.get("/items/{item_id}")
def read_item(item_id: int):
    return {"item_id": item_id}


@app.get("/status/{code}")
def status(code: int):
    return Response(status_code=code)


@app.get("/slow")
async def slow(seconds: float = 1.0):
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@app.get("/block")
async def block(seconds: float = 1.0):
    time.sleep(seconds)  # blocks this worker's event loop
    return {"blocked": seconds}


@app.get("/spin")
def spin(ms: float = 20.0):
    deadline = time.perf_counter() + ms / 1000
    while time.perf_counter() < deadline:  # CPU, not waiting: what a CPU quota throttles
        pass
    return {"spun_ms": ms}


@app.get("/leak")
async def leak(kib: int = 256, pause: float = 0.01):
    chunk = bytearray(kib << 10)
    chunk[::4096] = b"x" * len(chunk[::4096])  # touch every page: resident, not just reserved
    HELD.append(chunk)
    await asyncio.sleep(pause)  # a bounded pace, so that a memory check each second can keep up
    return {"pid": os.getpid(), "held_kib": sum(len(c) for c in HELD) >> 10}


@app.get("/pid")
def pid():
    return {"pid": os.getpid()}
