"""Models: every version with its metrics, gate result, labels, traffic share and agreement with
stable; for ``admin`` keys, promote, canary share and rollback, each behind a confirmation page.

Changes go through ``imgclf.registry.store.Registry`` (the code behind ``imgclf models promote`` and
``rollback``); the gateway re-reads the registry each second, so they take effect without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Request
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import Response

from imgclf.errors import RegistryError
from imgclf.gateway.console.base import (
    ConsoleRoute,
    ConsoleUser,
    console_of,
    form_fields,
    form_value,
    gateway_of,
    redirect,
    render,
    require,
    signed_in,
)
from imgclf.registry.store import CANARY, STABLE, ModelState, Registry, VersionInfo

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=ConsoleRoute)

ModelName = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")]
ACTIONS = ("promote", "canary", "share", "rollback")


def registry_of(request: Request) -> Registry:
    caches = console_of(request).caches
    if "registry" not in caches:
        caches["registry"] = Registry(gateway_of(request).settings.registry)
    return caches["registry"]


def agreement(request: Request, model: str) -> dict[int, tuple[int, int]]:
    """``{version: (agreed, compared)}`` for canary and shadow versions, from this process's counters."""
    found: dict[int, list[int]] = {}
    text = gateway_of(request).metrics.exposition().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != "imgclf_gateway_agreement_total" or sample.labels.get("model") != model:
                continue
            counts = found.setdefault(int(sample.labels["version"]), [0, 0])
            counts[1] += int(sample.value)
            if sample.labels.get("agree") == "true":
                counts[0] += int(sample.value)
    return {version: (agreed, total) for version, (agreed, total) in found.items()}


@dataclass(frozen=True)
class VersionRow:
    info: VersionInfo
    share: float | None  # share of unaddressed traffic; None: takes none
    agreement: tuple[int, int] | None
    failures: list[str]

    @property
    def metrics(self) -> dict[str, Any]:
        return {**self.info.gate_metrics, **self.info.metrics}


def model_view(request: Request, registry: Registry, model: str) -> dict[str, Any]:
    state = registry.state(model)
    agreements = agreement(request, model)
    rows = []
    for version in reversed(registry.versions(model)):
        info = registry.info(model, version)
        share = None
        if version == state.canary:
            share = state.canary_share
        elif version == state.stable:
            share = 1 - (state.canary_share if state.canary is not None else 0.0)
        failures = registry.gate_failures(model, version) if info.state not in (STABLE, "broken") else []
        rows.append(VersionRow(info, share, agreements.get(version), failures))
    earlier = state.history[-2]["version"] if state.canary is None and len(state.history) >= 2 else None
    return {"name": model, "state": state, "rows": rows, "rollback_to": earlier,
            "decisions": list(reversed(state.decisions[-5:]))}  # fmt: skip


@router.get("/models")
async def models_page(
    request: Request,
    user: Annotated[ConsoleUser, Depends(signed_in)],
    done: str | None = None,
    model: str | None = None,
    version: int | None = None,
) -> Response:
    require(user, "review")
    registry = registry_of(request)
    gateway = gateway_of(request)
    served = gateway.backend.model_name

    def views() -> list[dict[str, Any]]:
        names = sorted(registry.models(), key=lambda name: (name != served, name))
        return [model_view(request, registry, name) for name in names]

    message = _done_message(done, model, version)
    context = {"models": await gateway.run_blocking(views), "served": served, "message": message}
    return render(request, "models.html", context, user=user)


def _done_message(done: str | None, model: str | None, version: int | None) -> str | None:
    messages = {
        "promote": "{model} version {version} is now stable.",
        "canary": "{model} version {version} is now the canary.",
        "share": "{model}: canary share changed.",
        "rollback": "{model}: rolled back.",
    }
    if done not in messages or model is None:
        return None
    return messages[done].format(model=model, version=version)


def _describe(action: str, model: str, version: int | None, share: float | None, state: ModelState) -> str:
    if action == "promote":
        return (
            f"Version {version} becomes stable and takes all unaddressed traffic of {model}"
            + (f" (the canary, version {state.canary}, ends)" if state.canary is not None else "")
            + f". Version {state.stable} stays loaded, so a rollback is instant."
        )
    if action == "canary":
        return f"Version {version} becomes the canary of {model} and answers {share:.0%} of API keys (sticky per key)."
    if action == "share":
        return f"The canary (version {state.canary}) will answer {share:.0%} of API keys."
    if state.canary is not None:
        return f"The canary (version {state.canary}) ends; stable (version {state.stable}) answers all traffic again."
    previous = state.history[-2]["version"] if len(state.history) >= 2 else None
    return f"Stable moves back from version {state.stable} to version {previous}."


def _action_values(action: str, version: str | None, share: str | None) -> tuple[int | None, float | None]:
    if action not in ACTIONS:
        raise RegistryError(f"unknown action {action!r}")
    number = None
    if action in ("promote", "canary"):
        try:
            number = int(version or "")
        except ValueError:
            raise RegistryError("choose a version") from None
    fraction = None
    if action in ("canary", "share"):
        try:
            fraction = float(share or "")
        except ValueError:
            raise RegistryError("the canary share must be a number from 0 to 1") from None
        if not 0 <= fraction <= 1:
            raise RegistryError("the canary share must be a number from 0 to 1")
    return number, fraction


@router.get("/models/{model}/confirm")
async def confirm_page(
    request: Request,
    model: ModelName,
    user: Annotated[ConsoleUser, Depends(signed_in)],
    action: str = "",
    version: str | None = None,
    share: str | None = None,
) -> Response:
    require(user, "admin")
    number, fraction = _action_values(action, version, share)
    registry = registry_of(request)
    state = await gateway_of(request).run_blocking(registry.state, model)
    failures = registry.gate_failures(model, number) if action in ("promote", "canary") and number else []
    context = {"model": model, "action": action, "version": number, "share": fraction, "failures": failures,
               "description": _describe(action, model, number, fraction, state)}  # fmt: skip
    return render(request, "model_confirm.html", context, user=user)


@router.post("/models/{model}/apply")
async def apply(request: Request, model: ModelName, user: Annotated[ConsoleUser, Depends(signed_in)]) -> Response:
    require(user, "admin")
    fields = await form_fields(request)
    action = form_value(fields, "action") or ""
    number, fraction = _action_values(action, form_value(fields, "version"), form_value(fields, "share"))
    force = form_value(fields, "force") == "yes"
    registry = registry_of(request)

    def change() -> None:
        if action == "promote":
            registry.promote(model, number, STABLE, force=force)  # type: ignore[arg-type]
        elif action == "canary":
            registry.promote(model, number, CANARY, canary_share=fraction, force=force)  # type: ignore[arg-type]
        elif action == "share":
            registry.set_canary_share(model, fraction)  # type: ignore[arg-type]
        else:
            registry.rollback(model)

    await gateway_of(request).run_blocking(change)
    query = {"done": action, "model": model, **({"version": number} if number is not None else {})}
    return redirect("/ui/models?" + urlencode(query))
