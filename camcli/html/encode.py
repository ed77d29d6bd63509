"""Turning untrusted text into inert page data: JSON for <script> blocks, JS string literals, URLs.

Everything that comes from users' files (file names, labels, error messages, options) reaches the
page only through these functions, and the page puts it in the DOM with textContent/setAttribute.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any
from urllib.parse import quote

# Inside JSON these characters can only occur within strings, so \u escapes keep the meaning while
# making "</script>", "<!--" and HTML entities impossible in the page source.
_HTML_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def finite(value: Any) -> Any:
    """A copy of a JSON-like value with NaN/±Infinity as None: Python writes them, JSON.parse refuses them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def json_for_html(value: Any) -> str:
    """Compact ASCII JSON that is safe inside <script type="application/json"> (and inside a JS string)."""
    try:
        text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    except ValueError:  # rare: copying the whole value to replace them is slow for 100,000 records
        text = json.dumps(finite(value), ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.translate(_HTML_SAFE)  # ensure_ascii already escaped U+2028/U+2029 and lone surrogates


def js_string(text: str) -> str:
    """A double-quoted JavaScript string literal of ``text``, safe in a .js file or inline."""
    return json.dumps(text, ensure_ascii=True).translate(_HTML_SAFE)


def fs_bytes(text: str) -> bytes | None:
    """A file name's bytes as Python decoded them (undecodable bytes as U+DC80..U+DCFF), or None for
    text no file name can have (other lone surrogates, from a hand-edited JSON)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None


def plain_name(name: Any) -> str | None:
    """``name`` if it is a bare file name (as camcli writes in ``files``), else None.

    A name with a separator or '..' could point the report at files outside the image's folder.
    """
    if not isinstance(name, str) or name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        return None
    return name if fs_bytes(name) is not None else None


def url_path(target: str | os.PathLike[str], base: str | os.PathLike[str]) -> str:
    """The relative URL from folder ``base`` to ``target``: each path segment's bytes percent-encoded.

    The result holds only unreserved characters, '%' and '/', so it cannot carry a scheme such as
    ``javascript:``, a query or a fragment, whatever the file names (``#``, ``?``, ``%``, quotes,
    non-UTF-8 bytes).
    """
    rel = os.path.relpath(os.fspath(target), os.fspath(base))
    return "/".join(quote(os.fsencode(part), safe="") for part in rel.split(os.sep))
