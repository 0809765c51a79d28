"""Models by name: ``build("unet2d", in_channels=1, n_classes=4, depth=4)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["available", "build", "register", "spatial_dims"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_SPATIAL_DIMS: dict[str, int] = {}


def register(name: str, *, spatial_dims: int) -> Callable:
    """Class or factory decorator adding a model to the registry under ``name``;
    ``spatial_dims`` is what it builds by default (2: slice network, 3: volume)."""

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"a model named {name!r} is registered already")
        _REGISTRY[name] = factory
        _SPATIAL_DIMS[name] = spatial_dims
        return factory

    return decorate


def spatial_dims(name: str) -> int:
    """What a registered model builds by default: 2 (slices) or 3 (volumes).

    Examples
    --------
    >>> spatial_dims("unet2d"), spatial_dims("denseuseg")
    (2, 3)
    """
    if name not in _SPATIAL_DIMS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available())}")
    return _SPATIAL_DIMS[name]


def available() -> tuple[str, ...]:
    """Names :func:`build` accepts.

    Examples
    --------
    >>> "unet2d" in available() and "stacked-denseuseg" in available()
    True
    """
    return tuple(sorted(_REGISTRY))


def build(name: str, in_channels: int = 1, n_classes: int = 2, **options: Any) -> nn.Module:
    """Build a registered network.

    Parameters
    ----------
    name : str
        One of :func:`available`: ``unet2d``, ``unet3d``, ``denseuseg``, ``denseuseg2d``,
        ``stacked-denseuseg``, ``pix2pix``.
    in_channels : int
        Image channels (for a 2.5D ``unet2d`` with ``context=k``: channels per slice).
    n_classes : int
        Output classes.
    **options
        Passed to the model's constructor (depth, f0, skip, context, norm, ...).

    Every model has ``n_parameters`` (trainable parameters), ``halo`` (the
    receptive-field margin in voxels per spatial axis ``(z, y, x)``, what tiled
    inference must read around a tile) and ``config`` (the arguments that rebuild it).

    Examples
    --------
    >>> net = build("unet2d", in_channels=1, n_classes=3, depth=2, f0=8)
    >>> net.n_parameters > 0, net.halo
    (True, (0, 26, 26))
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available())}") from None
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
    if not isinstance(n_classes, int) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    return factory(in_channels=in_channels, n_classes=n_classes, **options)
