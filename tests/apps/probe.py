"""The app the tests serve when the seed app cannot show what they check."""

import asyncio
import os
import time

from fastapi import FastAPI, Request

app = FastAPI()


@app.get("/")
def root():
    return {"Hello": "World"}


@app.get("/items/{item_id}")
def read_item(item_id: int):
    return {"item_id": item_id}


@app.get("/env/{name}")
def env(name: str):
    return {"value": os.environ.get(name)}


@app.get("/pid")
def pid():
    return {"pid": os.getpid()}


@app.get("/slow")
async def slow(seconds: float = 2.0):
    print("slow request started", flush=True)
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@app.get("/block")
async def block(seconds: float = 2.0):
    time.sleep(seconds)  # blocks the event loop: this worker answers nothing else meanwhile
    return {"blocked": seconds}


@app.get("/whoami")
def whoami(request: Request):
    return {"client": request.client.host, "scheme": request.url.scheme}


@app.post("/echo")
async def echo(request: Request):
    return {"size": len(await request.body())}
