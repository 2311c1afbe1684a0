import os

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import ORJSONResponse, UJSONResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, EmailStr
from starlette.middleware.sessions import SessionMiddleware

app = FastAPI(default_response_class=ORJSONResponse)
app.add_middleware(SessionMiddleware, secret_key="not-a-secret")
templates = Jinja2Templates(directory="templates")


class Subscriber(BaseModel):
    email: EmailStr


@app.post("/login")
def login(request: Request, username: str = Form(...)):
    request.session["user"] = username
    return {"username": username}


@app.post("/upload")
async def upload(file: UploadFile = File(...)):
    return {"filename": file.filename, "size": len(await file.read())}


@app.get("/page")
def page(request: Request):
    return templates.TemplateResponse(request, "page.html", {"name": "derived"})


@app.post("/subscribe")
def subscribe(subscriber: Subscriber):
    return {"email": subscriber.email}


@app.get("/u", response_class=UJSONResponse)
def u():
    return {"ujson": True}


@app.get("/whoami")
def whoami():
    return {"uid": os.getuid()}
