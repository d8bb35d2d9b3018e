"""The HTTP service: the live engine, an embedded SQLite store and the FastAPI app.

Nothing here is imported by `import coldrec`; FastAPI, FAISS and the encoders load on first use.
"""
