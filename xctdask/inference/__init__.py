"""Distributed inference: a network over a whole volume, seamless across chunks.

Split (:mod:`~xctdask.inference.plan`, :mod:`~xctdask.inference.lattice`), run
(:mod:`~xctdask.inference.runner`), merge (:mod:`~xctdask.inference.mergers`); see
:func:`xctdask.predict`.
"""

import lazy_loader

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submodules=[],
    submod_attrs={
        "lattice": ["Lattice", "axis_starts", "blend_weights"],
        "mergers": ["MERGERS", "OUTPUTS", "Merger"],
        "plan": ["InferencePlan"],
        "predict": ["predict", "store_reader"],
    },
)

__all__ = [
    "MERGERS",
    "OUTPUTS",
    "InferencePlan",
    "Lattice",
    "Merger",
    "axis_starts",
    "blend_weights",
    "predict",
    "store_reader",
]
