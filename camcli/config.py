"""Config files: a TOML file supplies defaults for a command; the command line wins.

Keys at the top level apply to every command; a table named after the command (``[explain]``,
``[evaluate]``) adds to and overrides them for that command; ``[gates]`` holds ``camcli evaluate``'s gates.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from .errors import CamcliError

TABLES = ("explain", "evaluate", "gates")


def read_config(path: Path, command: str = "explain") -> tuple[dict[str, Any], dict[str, Any]]:
    """(the command's values, with '-' and '_' treated alike; the [gates] table)."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise CamcliError(f"Cannot read config file '{path}': {exc.strerror or exc}.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CamcliError(f"Config file '{path}' is not valid TOML: {exc}.") from exc
    values = {k: v for k, v in data.items() if not (k in TABLES and isinstance(v, dict))}
    table = data.get(command)
    if isinstance(table, dict):
        values.update(table)
    gates = data.get("gates")
    gates = gates if isinstance(gates, dict) else {}
    return {key.replace("-", "_"): value for key, value in values.items()}, gates
