from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Owner(BaseModel):
    name: str


class Pet(BaseModel):
    name: str
    owner: Owner | None = None


@app.post("/pets")
def create(pet: Pet) -> dict:
    return {"name": pet.name, "owner": pet.owner.name if pet.owner else None}


@app.get("/whoami")
def whoami() -> dict:
    return {"uid": os.getuid()}
