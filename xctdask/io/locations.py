"""Where data live, and whether writing to one place could touch another.

A *location* is a canonical string for a file, a folder or an object-store prefix:
``file:///abs/path`` for local paths (symbolic links resolved) and
``protocol://bucket/key`` for fsspec URLs. Two locations *overlap* when they are the
same or one lies inside the other; :func:`xctdask.io.guard.check_output` refuses to
write to a location that overlaps any input.

Examples
--------
>>> overlaps("s3://bucket/scan.zarr", "s3://bucket/scan.zarr/labels.zarr")
True
>>> overlaps("s3://bucket/scan.zarr", "s3://bucket/scan.zarr2")
False
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

__all__ = ["exists", "is_url", "location", "overlaps", "split_url"]

_URL = re.compile(r"^(?P<protocol>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<rest>.*)$")


def is_url(path: Any) -> bool:
    """True for ``protocol://...`` strings other than ``file://``.

    Examples
    --------
    >>> is_url("s3://b/k"), is_url("file:///tmp/x"), is_url("/tmp/x")
    (True, False, False)
    """
    if not isinstance(path, str):
        return False
    match = _URL.match(path)
    return bool(match) and match.group("protocol").lower() not in ("file", "local")


def split_url(url: str) -> tuple[str, str]:
    """``("s3", "bucket/key")`` for ``"s3://bucket/key"``."""
    match = _URL.match(url)
    if not match:
        raise ValueError(f"not a URL: {url!r}")
    return match.group("protocol").lower(), match.group("rest")


def location(path: str | os.PathLike) -> str:
    """The canonical location of a local path or URL (see the module docstring).

    Examples
    --------
    >>> location("s3://bucket/a/b/")
    's3://bucket/a/b'
    """
    text = os.fspath(path)
    match = _URL.match(text)
    if match and match.group("protocol").lower() not in ("file", "local"):
        protocol, rest = match.group("protocol").lower(), match.group("rest")
        if protocol in ("s3a", "s3n"):
            protocol = "s3"
        parts = [p for p in rest.split("/") if p not in ("", ".")]
        return f"{protocol}://" + "/".join(parts)
    if match:  # file:// URL
        text = match.group("rest")
    return "file://" + str(Path(text).expanduser().resolve())


def overlaps(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True if ``a`` and ``b`` are the same location or one contains the other."""
    la, lb = location(a), location(b)
    if la == lb:
        return True
    return la.startswith(lb.rstrip("/") + "/") or lb.startswith(la.rstrip("/") + "/")


def exists(path: str | os.PathLike, storage_options: dict | None = None) -> bool:
    """Whether a local path or a URL exists (fsspec for URLs)."""
    if is_url(os.fspath(path)):
        import fsspec

        fs, inner = fsspec.core.url_to_fs(os.fspath(path), **(storage_options or {}))
        return remote_exists(fs, inner, os.fspath(path))
    return Path(os.fspath(path)).exists()


def remote_exists(fs: Any, inner: str, url: str) -> bool:
    """``fs.exists(inner)``, with a server that cannot be reached as an ``OSError`` that
    names ``url`` (fsspec back-ends raise their own types, e.g. botocore's
    ``EndpointConnectionError``, which a caller catching ``OSError`` would miss)."""
    try:
        return bool(fs.exists(inner))
    except OSError:
        raise
    except Exception as err:
        raise OSError(f"cannot reach {url}: {err}") from err
