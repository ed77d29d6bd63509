"""Rebuild the full-resolution map of an explanation from what every run writes.

``--save map`` is opt-in: for a 12-megapixel photo a float32 map costs 48 MB per class, and it is
a pure function of the raw map (``*_raw.npy``) and the geometry in ``explanation.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when called: `import camcli` stays light
    import numpy as np


def full_map(json_path: str | Path, entry: int | dict[str, Any] = 0) -> np.ndarray:
    """The map ``--save map`` would have written for one explanation, as float32 height×width in [0, 1].

    ``json_path`` is an image's ``explanation.json``; ``entry`` an index into its ``explanations``
    or one of its entries. The raw map is upsampled bilinearly to the model input, min-max scaled
    and placed on the original image through the crop geometry, exactly as the writer does.
    """
    import numpy as np
    import torch

    from .maps import input_map, to_original
    from .outputs import load_map, read_explanation
    from .records import Geometry

    path = Path(json_path)
    doc = read_explanation(path)
    exp = doc["explanations"][entry] if isinstance(entry, int) else entry
    raw_name = (exp.get("files") or {}).get("raw_map")
    if not isinstance(raw_name, str):
        raise ValueError(
            f"Explanation {exp.get('method')}/{exp.get('class_index')} in {path} has no raw map: "
            "it was written without --save raw_map, so its map cannot be rebuilt."
        )
    raw = torch.from_numpy(load_map(path.parent / raw_name, (2, 3)))
    if raw.dim() != 2:
        raise ValueError(
            f"{exp.get('method')} is a pixel-space method: its raw map is already at input resolution "
            "and has no heat map to rebuild."
        )
    geometry = Geometry.from_doc(doc)
    heat = to_original(input_map(raw[None], geometry.input_size), geometry)[0]
    return heat.numpy().astype(np.float32, copy=False)
