"""``/healthz`` (the process answers), ``/readyz`` (predictions can be answered), ``/metrics``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from imgclf.gateway.dependencies import authorize, get_gateway
from imgclf.gateway.errors import error_body, request_id_of
from imgclf.gateway.runtime import Gateway
from imgclf.gateway.schemas import Readiness, error_responses

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process is up and serving HTTP."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"description": "Not ready; see checks."}})
async def readyz(request: Request, gateway: Annotated[Gateway, Depends(get_gateway)]) -> JSONResponse:
    """Readiness: predictions can be answered (a model version is AVAILABLE).

    The database and Redis are reported in `checks` but do not decide: without them predictions
    are still answered (records spooled, limits kept in memory), so a load balancer keeps the replica.
    """
    checks = await gateway.run_blocking(gateway.readiness)
    if checks["model"] == "ok":
        return JSONResponse({"status": "ready", "checks": checks})
    problems = "; ".join(f"{name}: {value}" for name, value in checks.items() if value != "ok")
    body = {"status": "not_ready", "checks": checks, **error_body("not_ready", problems, request_id_of(request))}
    return JSONResponse(body, status_code=503)


async def metrics_access(request: Request) -> None:
    """With ``IMGCLF_METRICS_REQUIRE_KEY``: a key of scope ``metrics`` (or ``admin``)."""
    if request.app.state.gateway.settings.metrics_require_key:
        await authorize(request, ("metrics",))


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(metrics_access)],
    responses=error_responses({403: "With IMGCLF_METRICS_REQUIRE_KEY: the key lacks the metrics scope."}),
)
def metrics(gateway: Annotated[Gateway, Depends(get_gateway)]) -> Response:
    """Prometheus metrics (text exposition format)."""
    return Response(gateway.metrics.exposition(), media_type=gateway.metrics.content_type)
