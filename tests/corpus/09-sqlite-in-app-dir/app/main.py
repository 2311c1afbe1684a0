import os

from fastapi import FastAPI
from sqlalchemy import Column, Integer, String, create_engine, select
from sqlalchemy.orm import Session, declarative_base

engine = create_engine("sqlite:///app.db", connect_args={"check_same_thread": False})
Base = declarative_base()


class Note(Base):
    __tablename__ = "notes"
    id = Column(Integer, primary_key=True)
    text = Column(String)


Base.metadata.create_all(bind=engine)
app = FastAPI()


@app.post("/notes")
def add(text: str):
    with Session(engine) as session:
        session.add(Note(text=text))
        session.commit()
    return {"added": text}


@app.get("/notes")
def notes():
    with Session(engine) as session:
        return {"notes": [note.text for note in session.scalars(select(Note))]}


@app.get("/whoami")
def whoami():
    return {"uid": os.getuid()}
