"""Distributed inference: a network over a whole volume, seamless across chunks.

See :func:`xctdask.predict`.
"""

from xctdask.inference.lattice import Lattice, axis_starts, blend_weights
from xctdask.inference.predict import OUTPUTS, predict

__all__ = ["OUTPUTS", "Lattice", "axis_starts", "blend_weights", "predict"]
