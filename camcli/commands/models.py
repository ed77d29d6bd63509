"""``camcli models``: model names matching a pattern."""

from __future__ import annotations

from ..choices import SOURCES
from ..errors import CamcliError


def models(pattern: str = "*", source: str = "timm") -> list[str]:
    """Names matching a glob ``pattern``, as ``--model`` takes them (torchvision's with ``tv:``)."""
    from ..models import list_model_names

    if source not in SOURCES:
        raise CamcliError(f"Unknown source '{source}'. Use one of {', '.join(SOURCES)}.")
    names = list_model_names(source, pattern)
    if not names:
        raise CamcliError(
            f"No {source} model matches '{pattern}'. Try a wider pattern such as '*{pattern.strip('*')}*'."
        )
    prefix = "tv:" if source == "tv" else ""
    return [prefix + name for name in names]
