"""The explanation methods, by name: camcli's own and your plugins.

A method is one class (see ``base.Method``) in one module:
- camcli's own live in this package; every module here that lists classes in ``METHODS`` is read;
- a plugin is a package of yours that declares its class under the ``camcli.methods`` entry-point
  group (``toycam = "toycam:ToyCam"`` in its pyproject.toml), found without changing camcli.

Method modules import torch inside their functions, so reading every declaration (names, kinds,
summaries, parameters) for ``--help`` and usage errors stays light; a plugin that imports torch at its
top makes ``--help`` pay for it.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from ..errors import CamcliError
from ..params import Param, Value, key_of, resolve
from .base import HEAT, KINDS, Method

ENTRY_POINTS = "camcli.methods"
SMOOTHING = ("aug", "eigen")
ALIASES = {"gradcampp": "gradcam++", "grad-cam": "gradcam", "vanilla": "saliency", "guided": "guided-backprop"}
DEFAULT = "gradcam"


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its declaration and where it comes from (``camcli`` or a plugin's
    distribution)."""

    name: str
    kind: str
    summary: str
    params: tuple[Param, ...]
    smoothing: frozenset[str]
    origin: str
    cls: type[Method]

    @property
    def key(self) -> str:
        """The method's name as option names spell it (``--KEY-PARAM``)."""
        return key_of(self.name)

    @classmethod
    def of(cls, method: Any, origin: str) -> MethodInfo:
        if not (isinstance(method, type) and issubclass(method, Method)):
            raise TypeError(f"{method!r} is not a subclass of camcli.methods.base.Method")
        name = getattr(method, "name", None)
        if not isinstance(name, str) or not name or name != name.strip().lower():
            raise TypeError(f"{method.__name__}.name must be a lower-case method name, not {name!r}")
        if method.kind not in KINDS:
            raise TypeError(f"{method.__name__}.kind must be one of {', '.join(KINDS)}, not {method.kind!r}")
        return cls(name, method.kind, method.summary, method.params, method.smoothing, origin, method)


def _builtin() -> list[MethodInfo]:
    """This package's methods: the default's module first, then module by module in name order, each
    module's ``METHODS`` in its own order (a family's members stay together)."""
    found = []
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: (m.name != DEFAULT, m.name)):
        loaded = importlib.import_module(f"{__name__}.{module.name}")
        found += [MethodInfo.of(m, "camcli") for m in getattr(loaded, "METHODS", ())]
    return found


def _plugins(taken: set[str]) -> list[MethodInfo]:
    """Methods declared under the entry-point group; one that cannot be loaded is reported, not fatal."""
    found = []
    for point in entry_points(group=ENTRY_POINTS):
        origin = point.dist.name if point.dist is not None else point.value
        try:
            info = MethodInfo.of(point.load(), origin)
        except Exception as exc:  # a broken plugin must not take camcli down with it
            print(f"camcli: ignoring method plugin '{point.name}' ({point.value}): {exc}", file=sys.stderr)
            continue
        if info.name in taken:
            print(f"camcli: ignoring method plugin '{point.name}': the name '{info.name}' is taken", file=sys.stderr)
            continue
        taken.add(info.name)
        found.append(info)
    return found


@functools.cache
def registry() -> Mapping[str, MethodInfo]:
    """Every method by name: camcli's own, then plugins, each name once."""
    own = {info.name: info for info in _builtin()}
    return own | {info.name: info for info in _plugins(set(own))}


def names() -> tuple[str, ...]:
    return tuple(registry())


def get(name: str) -> MethodInfo:
    return registry()[name]


def load(name: str) -> Method:
    """The method's implementation."""
    return get(name).cls()


def kind(name: str) -> str:
    return get(name).kind


def is_heat(name: str) -> bool:
    return kind(name) == HEAT


def parse_methods(specs: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Comma-separated, repeatable method names (or aliases) → unique names in the order given."""
    given = [n.strip().lower() for spec in specs for n in spec.split(",") if n.strip()]
    resolved = []
    for name in given:
        name = ALIASES.get(name, name)
        if name not in registry():
            raise CamcliError(
                f"Unknown method '{name}'. Use one or more of: {', '.join(names())} (e.g. --method gradcam,scorecam)."
            )
        resolved.append(name)
    return tuple(dict.fromkeys(resolved)) or (DEFAULT,)


def parse_smoothing(specs: str | Sequence[str] | None) -> frozenset[str]:
    """``--smooth aug,eigen`` (comma-separated, repeatable) → the set of smoothing modes."""
    if specs is None:
        return frozenset()
    items = [specs] if isinstance(specs, str) else list(specs)
    modes = {n.strip().lower() for spec in items for n in str(spec).split(",") if n.strip()}
    unknown = sorted(modes - set(SMOOTHING))
    if unknown:
        raise CamcliError(f"Unknown --smooth '{unknown[0]}'. Use aug, eigen, or both: --smooth aug,eigen.")
    return frozenset(modes)


def check_methods(methods: tuple[str, ...], smooth: frozenset[str], given: Mapping[str, Mapping[str, Any]]) -> None:
    """The checks of ``resolve_params``, and that every ``--smooth`` mode applies to a method asked for."""
    for mode in sorted(smooth):
        if not any(mode in get(m).smoothing for m in methods):
            fits = [m for m in names() if mode in get(m).smoothing]
            raise CamcliError(
                f"--smooth {mode} applies to none of the methods asked for; it applies to {', '.join(fits)}."
            )
    resolve_params(methods, given)


def resolve_params(
    methods: tuple[str, ...], given: Mapping[str, Mapping[str, Any]], input_size: tuple[int, int] | None = None
) -> dict[str, dict[str, Value]]:
    """Every asked-for method's parameters, ``given`` (by method, then parameter name) over the defaults,
    checked. A value for a method that was not asked for is an error, never silently ignored."""
    for name in given:
        if name not in methods:
            info = registry().get(name)
            options = ", ".join(p.option(name) for p in info.params) if info else name
            raise CamcliError(
                f"{options} set for {name}, which is not among the methods asked for ({', '.join(methods)}). "
                f"Add it: --method {','.join((*methods, name))}."
            )
    values = {}
    for name in methods:
        info = get(name)
        values[name] = resolve(name, info.params, given.get(name, {}))
        info.cls.check(values[name], input_size)
    return values


def split_options(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Pop every method parameter's keyword (``OCCLUSION_WINDOW``...) that was given (not None) out of
    ``options`` (command-line or API keywords), grouped by method."""
    given: dict[str, dict[str, Any]] = {}
    for info in registry().values():
        for param in info.params:
            value = options.pop(param.keyword(info.name), None)
            if value is not None:
                given.setdefault(info.name, {})[param.name] = value
    return given


__all__ = [
    "ALIASES",
    "DEFAULT",
    "ENTRY_POINTS",
    "SMOOTHING",
    "MethodInfo",
    "check_methods",
    "get",
    "is_heat",
    "kind",
    "load",
    "names",
    "parse_methods",
    "parse_smoothing",
    "registry",
    "resolve_params",
    "split_options",
]
