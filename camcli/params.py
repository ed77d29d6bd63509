"""Parameters declared once, next to what they parameterize (a method's maths, a runner's scheduling).

From one ``Param`` come the command-line option (``--OWNER-NAME``), the config-file key (the same
name), the Python API keyword (``OWNER_NAME``), the check of every value, the entry's JSON ``params``
and the settings fingerprint. Light (no torch): the command line builds its options from these
before any heavy library loads.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from .errors import CamcliError

Value = int | float | str | bool | tuple[Any, ...]


def key_of(name: str) -> str:
    """An owner's name as it appears in option names: lower case, ``+`` spelled ``p``, other
    punctuation a dash (``gradcam++`` → ``gradcampp``, ``guided-gradcam`` → ``guided-gradcam``)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower().replace("+", "p")).strip("-")


@dataclass(frozen=True)
class Param:
    """One parameter: its name, type, default, help and bounds.

    ``kind`` is ``int``, ``float``, ``str`` or ``bool``; ``many`` takes a comma-separated list (a
    tuple of values, at least one). Bounds are inclusive unless ``low_open``/``high_open``.
    ``record``: the value shapes the outputs, so it goes into the entry's ``params`` and the
    fingerprint (a batch size that only changes how work is grouped does not).
    """

    name: str
    kind: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    many: bool = False
    metavar: str | None = None
    record: bool = True

    def option(self, owner: str) -> str:
        """The command-line option and config key: ``--OWNER-NAME``."""
        return f"--{key_of(owner)}-{self.name.replace('_', '-')}"

    def keyword(self, owner: str) -> str:
        """The Python API keyword and the parsed option's name: ``OWNER_NAME``."""
        return self.option(owner)[2:].replace("-", "_")

    def describe_default(self) -> str:
        if self.many and isinstance(self.default, tuple):
            return ",".join(str(v) for v in self.default)
        return str(self.default).lower() if isinstance(self.default, bool) else str(self.default)

    def check(self, value: Any, owner: str) -> Value:
        """``value`` (from the command line as text, from a config file or the API as a value) checked
        and normalized, or a CamcliError that names the option and says what to pass."""
        if self.many:
            items = value if isinstance(value, (list, tuple)) else str(value).split(",")
            if not items:
                self._fail(owner, value, "a comma-separated list")
            return tuple(self._one(v, owner) for v in items)
        return self._one(value, owner)

    def _one(self, value: Any, owner: str) -> Value:
        if isinstance(value, str):
            value = value.strip()
        if self.kind is bool:
            if isinstance(value, bool):
                return bool(value)
            text = str(value).lower()
            if text in ("true", "yes", "on", "1"):
                return True
            if text in ("false", "no", "off", "0"):
                return False
            self._fail(owner, value, "true or false")
        if self.kind is str:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str):
                self._fail(owner, value, "text")
            if self.choices and value not in self.choices:
                self._fail(owner, value, f"one of {', '.join(self.choices)}")
            return str(value)
        number = self._number(value, owner)
        self._bounds(number, owner)
        return number

    def _number(self, value: Any, owner: str) -> int | float:
        if isinstance(value, bool):
            self._fail(owner, value, self._what())
        try:
            number = float(value) if not isinstance(value, (int, float)) else value
        except (TypeError, ValueError):
            self._fail(owner, value, self._what())
        if not math.isfinite(number):
            self._fail(owner, value, f"a finite {self._what()}")
        if self.kind is int:
            if isinstance(number, float) and not number.is_integer():
                self._fail(owner, value, "a whole number")
            return int(number)
        return float(number)

    def _bounds(self, number: float, owner: str) -> None:
        low, high = self.low, self.high
        too_low = low is not None and (number <= low if self.low_open else number < low)
        too_high = high is not None and (number >= high if self.high_open else number > high)
        if too_low or too_high:
            self._fail(owner, number, self.range_text())

    def range_text(self) -> str:
        """The allowed range in words, for help texts and errors."""
        low = "" if self.low is None else f"{self.low:g} {'<' if self.low_open else '≤'} "
        high = "" if self.high is None else f" {'<' if self.high_open else '≤'} {self.high:g}"
        return f"a {self._what()} with {low}value{high}" if low or high else f"a {self._what()}"

    def _what(self) -> str:
        return "whole number" if self.kind is int else "number"

    def _fail(self, owner: str, value: Any, wanted: str) -> NoReturn:
        raise CamcliError(
            f"{self.option(owner)} {value!r} is not {wanted}. Pass e.g. {self.option(owner)} {self.describe_default()}."
        )


def integer(value: Value) -> int:
    """A checked parameter's value as an int (for a parameter declared ``int``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a whole number, got {value!r}")
    return value


def number(value: Value) -> float:
    """A checked parameter's value as a float (for a parameter declared ``float`` or ``int``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def resolve(
    owner: str, declared: Iterable[Param], given: Mapping[str, Any], origin: str = "option"
) -> dict[str, Value]:
    """Every declared parameter's value: ``given`` (checked) over the defaults. A given name that is not
    declared is an error naming the ones that are."""
    params = {p.name: p for p in declared}
    unknown = [name for name in given if name not in params]
    if unknown:
        known = ", ".join(p.option(owner) for p in params.values()) or "none"
        raise CamcliError(f"{owner} has no {origin} '{unknown[0]}'. Its options: {known}.")
    return {name: p.check(given[name], owner) if name in given else p.default for name, p in params.items()}


__all__ = ["Param", "Value", "integer", "key_of", "number", "resolve"]
