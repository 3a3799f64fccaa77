"""A small FastAPI app with the probes and metrics the deploy pipeline relies on."""

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

app = FastAPI(title="jisu-backend")

REQUESTS = Counter("jisu_requests_total", "Requests served", ["path"])
_ready = {"value": True}


@app.get("/health")
def health() -> dict:
    """Liveness: the process answers."""
    REQUESTS.labels(path="/health").inc()
    return {"status": "ok"}


@app.get("/ready")
def ready(response: Response) -> dict:
    """Readiness: the process can serve traffic."""
    REQUESTS.labels(path="/ready").inc()
    if not _ready["value"]:
        response.status_code = 503
        return {"status": "not ready"}
    return {"status": "ready"}


@app.get("/api/health")
def api_health() -> dict:
    """The health check the environments call through the public URL."""
    return health()


@app.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def fund_return(start: float, end: float) -> float:
    """Simple return of a fund between two net asset values."""
    if start <= 0:
        raise ValueError("start value must be positive")
    return (end - start) / start
