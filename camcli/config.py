"""Config files: a TOML file supplies defaults for `camcli explain`; the command line wins."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from .errors import CamcliError


def read_config(path: Path) -> dict[str, Any]:
    """The file's top-level keys, or its [explain] table, with '-' and '_' treated alike."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise CamcliError(f"Cannot read config file '{path}': {exc.strerror or exc}.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CamcliError(f"Config file '{path}' is not valid TOML: {exc}.") from exc
    if isinstance(data.get("explain"), dict):
        data = data["explain"]
    return {key.replace("-", "_"): value for key, value in data.items()}
