"""Run Dask work with a progress bar on whichever scheduler is active."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import dask


def compute(*collections: Any, progress: bool = True, description: str = "") -> tuple:
    """Compute Dask collections, showing progress when ``progress`` is true.

    With an active ``distributed.Client`` the work goes to the cluster and the
    distributed text progress bar is shown; otherwise the local scheduler runs it under
    ``dask.diagnostics.ProgressBar``. Returns a tuple like ``dask.compute``.
    """
    from xctdask.cluster import active_client

    client = active_client()
    if client is not None:
        futures = client.compute(list(collections))
        if progress:
            from distributed.diagnostics.progressbar import progress as show

            if description:
                print(description, file=sys.stderr)
            # the text bar writes to stdout; keep stdout for results (JSON from the CLI)
            with contextlib.redirect_stdout(sys.stderr):
                show(futures, notebook=False)
        return tuple(client.gather(futures))
    if progress:
        from dask.diagnostics import ProgressBar

        if description:
            print(description, file=sys.stderr)
        with ProgressBar(out=sys.stderr, minimum=1.0):
            return dask.compute(*collections)
    return dask.compute(*collections)
