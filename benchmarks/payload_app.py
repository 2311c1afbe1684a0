"""The app of the cost curves (benchmarks/curves.py) and of the stop with a request in flight.

The harness copies this file to ``<temporary dir>/app/main.py`` and starts every server there with
``app.main:app``, so that each one finds it the way it finds the seed app (tiangolo's module
detection included). Its endpoints are ``async``: the seed app's ``def`` endpoints add a hop to the
thread pool per request, the same at every size, which would hide the part that grows with the size.

- ``GET /bytes/{n}``: a body of n bytes (built once per size).
- ``POST /upload``: reads the whole request body, answers its length.
- ``GET /slow/{ms}``: a streamed answer: a first chunk at once, the last after ms milliseconds. A
  client that has read the first chunk knows the request is in the app, and sends the stop then.
- ``BENCH_MODEL_MB``: megabytes the module holds from its import on, like a model an app loads, to
  show what preloading shares between the workers.
"""

import asyncio
import functools
import os

from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

# Written byte by byte (not a lazily mapped zero page), so that it is resident in every process.
MODEL = b"m" * int(float(os.environ.get("BENCH_MODEL_MB") or 0) * 2**20)
LIMIT = 64 * 2**20

app = FastAPI()


@functools.lru_cache(maxsize=16)
def _body(size: int) -> bytes:
    return b"x" * size


@app.get("/")
async def root():
    return {"Hello": "World"}


@app.get("/health", include_in_schema=False)
async def health():
    return {"status": "ok"}


@app.get("/bytes/{size}")
async def sized(size: int):
    if not 0 <= size <= LIMIT:
        return Response(status_code=400)
    return Response(_body(size), media_type="application/octet-stream")


@app.post("/upload")
async def upload(request: Request):
    body = await request.body()
    return Response(str(len(body)), media_type="text/plain")


@app.get("/slow/{ms}")
async def slow(ms: int):
    async def chunks():
        yield b"started\n"
        await asyncio.sleep(ms / 1000)
        yield b"finished\n"

    return StreamingResponse(chunks(), media_type="text/plain")
