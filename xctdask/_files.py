"""Where xctdask writes a single file (a network, a Segmenter, a PseudoLabeler)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["check_new_file"]


def check_new_file(path: str | os.PathLike, overwrite: bool, example: str = "segmenter.pt") -> Path:
    """``path`` as a ``Path`` once it is clear a file may be written there; ``example``
    is the file name a folder's error suggests.

    Raises
    ------
    IsADirectoryError
        ``path`` is a folder: no ``overwrite`` may replace it with a file.
    FileExistsError
        ``path`` is a file and ``overwrite`` is false.

    Examples
    --------
    >>> import tempfile
    >>> check_new_file(tempfile.gettempdir(), overwrite=True)
    Traceback (most recent call last):
    ...
    IsADirectoryError: ... is a folder; give a file name inside it, e.g. .../segmenter.pt
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"{path} is a folder; give a file name inside it, e.g. {path / example}"
        )
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    return path
