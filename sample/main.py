"""The base image's sample app, as tiangolo's image had one: derived images replace it (or `rm` it)."""

import sys

from fastapi import FastAPI

app = FastAPI()
python = f"{sys.version_info.major}.{sys.version_info.minor}"


@app.get("/")
async def read_root():
    return {"message": f"Hello world! From FastAPI running on Uvicorn with Gunicorn. Using Python {python}"}
