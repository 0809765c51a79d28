"""What every network declares: its outputs, its shape contract, how it trains.

The library never guesses a network's role from its name. A :class:`Network` says:

* ``outputs``: what ``forward`` returns, in order: ``("logits",)`` for a segmenter,
  ``("denoised", "logits")`` for Stacked-DenseUSeg, ``("denoised",)`` for a denoiser;
  :meth:`Network.split` turns a forward result into ``{name: tensor}``;
* ``spatial_dims`` (2 for slice networks, 2D and 2.5D; 3 for volume networks),
  ``in_channels`` (per slice), ``context`` (adjacent slices of a 2.5D network),
  ``n_classes`` (0 for a denoiser), and ``normalization`` / ``class_names`` once trained;
* how it trains: :meth:`Network.default_loss`, :meth:`Network.optimizer_groups`,
  :meth:`Network.extra_optimizers` and :meth:`Network.training_step` (Pix2Pix overrides
  the step with its discriminator update);
* ``halo`` and ``config`` (the registry name and arguments that rebuild it).

Any plain ``torch.nn.Module`` becomes a Network with :func:`wrap` (``spatial_dims`` and,
if it is not a segmenter, ``outputs`` given by the caller); :func:`as_network` is what
``predict`` and ``train`` call on whatever they are given.

Examples
--------
>>> import torch
>>> net = wrap(torch.nn.Conv2d(1, 3, 3, padding=1), spatial_dims=2)
>>> net.outputs, net.n_classes, net.in_channels
(('logits',), 3, 1)
>>> sorted(net.split(net(torch.zeros(1, 1, 8, 8))))
['logits']
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "OUTPUT_KINDS",
    "Network",
    "StepContext",
    "WrappedNetwork",
    "arguments",
    "as_network",
    "crop_back",
    "pad_to_multiple",
    "spatial_sizes",
    "wrap",
]

#: What a network can produce: class scores, and a denoised image.
OUTPUT_KINDS = ("logits", "denoised")


@dataclass
class StepContext:
    """What :meth:`Network.training_step` needs from the training engine.

    Attributes
    ----------
    loss : nn.Module
        The loss (a network's :meth:`~Network.default_loss` unless the caller chose).
    optimizers : dict of str to Optimizer
        ``"main"`` and any :meth:`~Network.extra_optimizers`.
    autocast : context manager factory
        Mixed precision for forward passes (bf16 on CUDA by default).
    grad_clip : float or None
    n_classes : int
        Classes of the labels being trained on.
    """

    loss: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    autocast: Callable[[], AbstractContextManager]
    grad_clip: float | None = 1.0
    n_classes: int = 0
    logs: dict[str, float] = field(default_factory=dict)

    def optimize(self, value: torch.Tensor, name: str = "main") -> None:
        """Zero the gradients, back-propagate ``value``, clip, and step ``name``."""
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        if self.grad_clip:
            params = [p for g in optimizer.param_groups for p in g["params"]]
            nn.utils.clip_grad_norm_(params, self.grad_clip)
        optimizer.step()


class Network(nn.Module):
    """Base class of the zoo's networks; see the module docstring for the contract.

    Subclasses set, in ``__init__``: ``spatial_dims``, ``in_channels``, ``n_classes``,
    ``halo``, ``config`` and, when not the default ``("logits",)``, ``outputs`` and
    ``context``.
    """

    __jit_ignored_attributes__: ClassVar[list[str]] = [
        "config",
        "outputs",
        "normalization",
        "class_names",
        "source_location",
        "history",
        "class_weighted",
    ]
    __jit_unused_properties__: ClassVar[list[str]] = ["n_parameters", "segments", "denoises"]

    # declarations (no annotations: TorchScript must not try to type them)
    outputs = ("logits",)
    context = 1
    n_classes = 0
    normalization = None
    class_names = None

    # ------------------------------------------------------------ declarations
    @property
    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def segments(self) -> bool:
        """True if the network produces class scores."""
        return "logits" in self.outputs

    @property
    def denoises(self) -> bool:
        """True if the network produces a denoised image."""
        return "denoised" in self.outputs

    def split(self, result: Any) -> dict[str, torch.Tensor]:
        """A forward result as ``{output name: tensor}`` in the declared order."""
        if isinstance(result, (tuple, list)):
            if len(result) != len(self.outputs):
                raise ValueError(
                    f"{type(self).__name__} returned {len(result)} tensors but declares "
                    f"outputs {self.outputs}"
                )
            return dict(zip(self.outputs, result, strict=True))
        if len(self.outputs) != 1:
            raise ValueError(
                f"{type(self).__name__} returned one tensor but declares outputs {self.outputs}"
            )
        return {self.outputs[0]: result}

    def extra_repr(self) -> str:
        return f"n_parameters={self.n_parameters:,}, halo={getattr(self, 'halo', None)}"

    # ----------------------------------------------------------------- training
    # whether the default loss weighs classes by median(P/S)/(P/S) (Stacked-DenseUSeg)
    class_weighted = False

    def default_loss(self, class_weights: torch.Tensor | None = None) -> nn.Module:
        """The loss this network trains with unless told otherwise; ``class_weights``
        weigh its cross entropy."""
        from xctdask import losses

        ce = losses.CrossEntropyLoss(weight=class_weights)
        if self.segments and self.denoises:
            return losses.DenoiseSegmentLoss(segmentation=ce)
        if self.denoises:
            return losses.DenoiseLoss()
        return ce

    def optimizer_groups(self, config: Any) -> list[dict[str, Any]]:
        """Parameter groups of the main optimiser (one group at ``config.lr``)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": config.lr}]

    def extra_optimizers(self, config: Any, make: Callable[..., Any]) -> dict[str, Any]:
        """Optimisers besides the main one (none; Pix2Pix has a discriminator's)."""
        return {}

    def compute_loss(
        self, loss: nn.Module, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Apply ``loss`` to the declared outputs and the batch's targets."""
        if self.segments and self.denoises:
            return loss((outputs["denoised"], outputs["logits"]), (batch["clean"], batch["target"]))
        if self.denoises:
            return loss(outputs["denoised"], batch["clean"])
        return loss(outputs["logits"], batch["target"])

    def training_step(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        """One optimisation step on ``batch`` (already augmented, on the device)."""
        with ctx.autocast():
            outputs = self.split(self(batch["image"]))
            value = self.compute_loss(ctx.loss, outputs, batch)
        ctx.optimize(value)
        return value.detach()

    def required_targets(self) -> tuple[str, ...]:
        """The sampler parts training needs: ``target`` (labels), ``clean`` or both."""
        needs = []
        if self.segments:
            needs.append("target")
        if self.denoises:
            needs.append("clean")
        return tuple(needs)

    def suggest_patch(self, shape: tuple[int, int, int], size: int = 128) -> tuple[int, ...]:
        """A training patch for a volume of ``shape``: ``(1, s, s)`` for slice networks,
        ``(d, s, s)`` for volume networks, each no larger than the volume."""
        s = [min(size, n) for n in shape[1:]]
        if self.spatial_dims == 2:
            return (1, *s)
        return (min(size, shape[0], max(8, shape[0] // 4)), *s)


class WrappedNetwork(Network):
    """A plain ``nn.Module`` with the declarations of :class:`Network` (see :func:`wrap`)."""

    def __init__(
        self,
        module: nn.Module,
        *,
        spatial_dims: int,
        outputs: tuple[str, ...] = ("logits",),
        in_channels: int | None = None,
        n_classes: int | None = None,
        context: int = 1,
    ):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        outputs = tuple(outputs)
        if not outputs or any(o not in OUTPUT_KINDS for o in outputs):
            raise ValueError(f"outputs must be names from {OUTPUT_KINDS}, got {outputs!r}")
        if not isinstance(context, int) or context < 1 or context % 2 == 0:
            raise ValueError(f"context must be a positive odd integer, got {context!r}")
        self.module = module
        self.spatial_dims = spatial_dims
        self.outputs = outputs
        self.context = context
        self.in_channels = in_channels if in_channels is not None else _first_conv_in(module)
        if self.in_channels is None:
            raise ValueError("cannot tell the module's input channels: pass in_channels=")
        if context > 1:
            self.in_channels //= context
        found = n_classes if n_classes is not None else _last_conv_out(module)
        self.n_classes = int(found or 0) if "logits" in outputs else 0
        self.halo = (0, 0, 0)
        self.config = None  # not in the registry: save the module with torch.save

    def forward(self, x: torch.Tensor) -> Any:
        if self.spatial_dims == 2 and x.dim() == 5:  # (N, C, context, H, W) → channels
            x = x.flatten(1, 2)
        return self.module(x)


def _convs(module: nn.Module) -> list[nn.Module]:
    kinds = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)
    return [m for m in module.modules() if isinstance(m, kinds)]


def _first_conv_in(module: nn.Module) -> int | None:
    convs = _convs(module)
    return None if not convs else int(getattr(convs[0], "in_channels", 0) or 0) or None


def _last_conv_out(module: nn.Module) -> int | None:
    convs = [m for m in _convs(module) if not isinstance(m, nn.Linear)]
    return None if not convs else int(convs[-1].out_channels)


def wrap(
    module: nn.Module,
    *,
    spatial_dims: int,
    outputs: tuple[str, ...] = ("logits",),
    in_channels: int | None = None,
    n_classes: int | None = None,
    context: int = 1,
) -> WrappedNetwork:
    """Give any ``nn.Module`` the declarations ``predict`` and ``train`` need.

    Parameters
    ----------
    module : torch.nn.Module
        Maps ``(N, C, *spatial)`` to the declared outputs, of the input's spatial size.
    spatial_dims : {2, 3}
        2 for a slice network (it sees ``(N, C·context, H, W)``), 3 for a volume network.
    outputs : tuple of str
        What ``forward`` returns: ``("logits",)`` (default), ``("denoised",)`` or
        ``("denoised", "logits")``.
    in_channels, n_classes : int, optional
        Default: read from the first and last convolution.
    context : int
        Adjacent slices a 2.5D module sees as channels.

    Examples
    --------
    >>> from monai.networks.nets import UNet    # doctest: +SKIP
    >>> net = wrap(UNet(2, 1, 3, (8, 16), (2,)), spatial_dims=2)   # doctest: +SKIP
    """
    return WrappedNetwork(
        module,
        spatial_dims=spatial_dims,
        outputs=outputs,
        in_channels=in_channels,
        n_classes=n_classes,
        context=context,
    )


def as_network(
    net: nn.Module, *, spatial_dims: int | None = None, outputs: tuple[str, ...] | None = None
) -> Network:
    """``net`` itself if it is a :class:`Network`, else :func:`wrap` of it.

    A plain module needs ``spatial_dims`` (or a ``spatial_dims`` attribute); its
    ``outputs`` default to ``("logits",)`` (or an ``outputs`` attribute). Attributes
    ``context``, ``in_channels``, ``normalization`` and ``class_names`` carry over.
    """
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    if isinstance(net, Network):
        if spatial_dims is not None and spatial_dims != net.spatial_dims:
            raise ValueError(f"this network is {net.spatial_dims}-D, not {spatial_dims}-D")
        if outputs is not None and tuple(outputs) != net.outputs:
            raise ValueError(f"this network declares outputs {net.outputs}, not {outputs}")
        return net
    dims = spatial_dims if spatial_dims is not None else getattr(net, "spatial_dims", None)
    if dims not in (2, 3):
        raise ValueError(
            "a plain torch.nn.Module needs spatial_dims=2 (slice network) or 3 (volume "
            f"network); got {dims!r}"
        )
    declared = outputs if outputs is not None else getattr(net, "outputs", ("logits",))
    wrapped = wrap(
        net,
        spatial_dims=dims,
        outputs=tuple(declared),
        in_channels=getattr(net, "in_channels", None),
        n_classes=getattr(net, "n_classes", None),
        context=int(getattr(net, "context", 1) or 1),
    )
    for name in ("normalization", "class_names", "source_location"):
        if getattr(net, name, None) is not None:
            setattr(wrapped, name, getattr(net, name))
    return wrapped


def arguments(name: str, local_variables: dict) -> dict:
    """A network's ``config``: its registry name and constructor arguments (from
    ``locals()`` at the top of ``__init__``)."""
    skip = {"self", "__class__"}
    return {"name": name, **{k: v for k, v in local_variables.items() if k not in skip}}


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, list[int]]:
    """Pad the spatial axes of ``x`` (N, C, ...) up to a multiple, by edge replication.

    Padding is split evenly between both sides so the network sees the input centred.
    Returns the padded tensor and the number of voxels added before each spatial axis
    (what :func:`crop_back` needs). TorchScript-compatible.
    """
    before: list[int] = []
    pad: list[int] = []
    for d in range(x.dim() - 1, 1, -1):  # F.pad lists the last axis first
        extra = (multiple - x.shape[d] % multiple) % multiple
        before.insert(0, extra // 2)
        pad.append(extra // 2)
        pad.append(extra - extra // 2)
    if sum(pad) == 0:
        return x, before
    return F.pad(x, pad, mode="replicate"), before


def crop_back(y: torch.Tensor, before: list[int], sizes: list[int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple` on an output with the padded spatial size."""
    for i in range(len(sizes)):
        y = y.narrow(2 + i, before[i], sizes[i])
    return y


def spatial_sizes(x: torch.Tensor) -> list[int]:
    return [int(s) for s in x.shape[2:]]
