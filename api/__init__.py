"""The HTTP API (FastAPI) over the engine, the dataset store and the run cache: see api/app.py."""
