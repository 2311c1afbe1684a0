from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def read_root():
    return {"Hello": "World"}


@app.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}


@app.get("/health", include_in_schema=False)
async def health():
    # For the image's HEALTHCHECK and orchestrators' probes: async and dependency-free, so it answers
    # from the event loop even when the thread pool is saturated by slow sync endpoints.
    return {"status": "ok"}
