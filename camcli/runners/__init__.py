"""Runners, by name: how a job's batches are scheduled (``--runner``). Light (no torch, no Ray).

Every runner goes through ``runners.base`` (the output folder's lock, accounting, interruption,
summary and the resume rule); a runner module adds only ``outcomes(job, session, todo, stop)``: the
images explained and written, in input order. Its options are declared here, next to its name, and
become ``--RUNNER-NAME`` options, config keys and job fields (``ExplainJob.runner_params``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import CamcliError
from ..params import Param, Value, resolve

DEFAULT = "local"


@dataclass(frozen=True)
class RunnerInfo:
    name: str
    summary: str
    params: tuple[Param, ...] = ()
    extra: str | None = None  # the pip extra that installs what it needs

    @property
    def module(self) -> str:
        return f"{__name__}.{self.name}"


REGISTRY = {
    r.name: r
    for r in (
        RunnerInfo("local", "this process: decoding ahead of the model and writing behind it in threads"),
        RunnerInfo(
            "ray",
            "a Ray cluster: decoding in tasks, explaining and writing in a pool of actors",
            (
                Param(
                    "address",
                    str,
                    "",
                    "Ray cluster to use (default: RAY_ADDRESS, else a running cluster, else start one here)",
                    metavar="ADDR",
                    record=False,
                ),
                Param(
                    "workers",
                    int,
                    (),
                    "explaining actors, N or MIN,MAX (default: 1 to half the CPUs, or one per GPU share)",
                    low=1,
                    many=True,
                    metavar="MIN,MAX",
                    record=False,
                ),
                Param(
                    "gpus_per_worker",
                    float,
                    0.0,
                    "GPUs per explaining actor (fractions share a GPU)",
                    low=0.0,
                    record=False,
                ),
            ),
            extra="ray",
        ),
    )
}
NAMES = tuple(REGISTRY)


def resolve_params(runner: str, given: Mapping[str, Any]) -> dict[str, Value]:
    """The runner's parameters, given over defaults, checked; a runner's option given to another runner
    is an error, never silently ignored."""
    if runner not in REGISTRY:
        raise CamcliError(f"Unknown runner '{runner}'. Use one of {', '.join(NAMES)}.")
    values = resolve(runner, REGISTRY[runner].params, given)
    workers = values.get("workers")
    if isinstance(workers, tuple) and workers and (len(workers) > 2 or workers[0] > workers[-1]):
        raise CamcliError("--ray-workers takes N or MIN,MAX with MIN <= MAX (e.g. 1,4).")
    return values


def split_options(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Pop every runner option's keyword that was given (not None) out of ``options``, by runner."""
    given: dict[str, dict[str, Any]] = {}
    for info in REGISTRY.values():
        for param in info.params:
            value = options.pop(param.keyword(info.name), None)
            if value is not None:
                given.setdefault(info.name, {})[param.name] = value
    return given


def check_options(runner: str, given: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``given`` (by runner) holds options for ``runner`` only: the ones given for it, checked."""
    for name, values in given.items():
        if name != runner and values:
            first = next(iter(values))
            option = next((p.option(name) for p in REGISTRY[name].params if p.name == first), name)
            raise CamcliError(f"{option} applies to --runner {name}, not --runner {runner}. Add --runner {name}.")
    mine = dict(given.get(runner, {}))
    resolve_params(runner, mine)
    return mine


__all__ = ["DEFAULT", "NAMES", "REGISTRY", "RunnerInfo", "check_options", "resolve_params", "split_options"]
