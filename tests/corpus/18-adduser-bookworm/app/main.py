import os
import pwd

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def read_root():
    return {"user": pwd.getpwuid(os.getuid()).pw_name}


@app.get("/whoami")
def whoami():
    return {"uid": os.getuid()}
