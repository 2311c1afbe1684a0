import os

import numpy as np
import pydantic
from fastapi import FastAPI
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel

app = FastAPI(default_response_class=ORJSONResponse)


class Sample(BaseModel):
    values: list[float]


@app.post("/stats")
def stats(sample: Sample):
    array = np.array(sample.values)
    return {"mean": float(array.mean()), "numpy": np.__version__, "pydantic": pydantic.VERSION}


@app.get("/whoami")
def whoami():
    return {"uid": os.getuid()}
