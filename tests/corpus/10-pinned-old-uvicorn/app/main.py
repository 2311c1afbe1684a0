import os

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def read_root():
    return {"uvicorn": uvicorn.__version__}


@app.get("/whoami")
def whoami():
    return {"uid": os.getuid()}
