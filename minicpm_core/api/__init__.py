"""MiniCPM-2B over HTTP: the seed tutorial's `POST /` and an OpenAI-compatible `/v1`.

    python -m minicpm_core.api --model OpenBMB/MiniCPM-2B-sft-fp32 --port 6006

`create_app(engine)` builds the app for an already loaded engine (tests, embedding); `__main__`
loads the model once and serves it with uvicorn. The layers, as vLLM splits them: `protocol.py`
(wire schemas), `serving.py` (the chat service), `errors.py` (errors to HTTP), `guard.py` (API key,
body size), `routes.py` (endpoints), `app.py` (wiring). This is the only place in `minicpm_core`
that imports FastAPI.
"""

from .app import create_app

__all__ = ["create_app"]
