"""Weak (geometric) and strong (intensity) augmentation of training batches, in PyTorch.

Batches are tensors ``image (N, C, *spatial)``, ``labels (N, *spatial)`` and ``clean
(N, C', *spatial)`` with 2 or 3 spatial axes; a 2.5D stack of ``k`` slices is ``C = k``
channels. Everything runs on the device the batch is on.

* :func:`weak`: per sample, a random element of the symmetry group of the square
  (flips, 90° rotations and transposes of the last two axes; for 3-D patches also a flip
  of the first axis). The same transform moves image, labels and clean target, and all
  channels of a 2.5D stack, so they stay aligned.
* :func:`strong`: per sample, each with probability ``p``: contrast and brightness,
  Gaussian noise whose sigma is drawn at random (as in the noise-robustness study),
  Gaussian blur and cutout by default; gamma and local histogram equalisation on
  request (they remap grey values, which in CT identify materials). One draw of parameters
  per sample serves every channel, so the slices of a 2.5D stack change alike. Only
  the image changes; labels are left alone. It is meant for the student's input in
  self-correction and for robustness training, not for targets.

Randomness comes from a ``torch.Generator`` (default: a fresh one seeded from
``seed``), so a run can be repeated exactly.

Examples
--------
>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> image = torch.rand(2, 3, 16, 16)
>>> labels = (image[:, 1] > 0.5).long()
>>> image_w, labels_w, _ = weak(image, labels, generator=g)
>>> bool(torch.equal(labels_w, (image_w[:, 1] > 0.5).long()))
True
>>> strong(image, generator=g).shape
torch.Size([2, 3, 16, 16])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xctdask.backend import is_number

__all__ = [
    "DEFAULT_OPS",
    "OPS",
    "StrongAugment",
    "clahe",
    "degrade",
    "equalize_local",
    "noise_fraction",
    "strong",
    "weak",
]


def _generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator:
    if generator is not None:
        return generator
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _check(image: torch.Tensor, labels: torch.Tensor | None, clean: torch.Tensor | None):
    if image.dim() not in (4, 5):
        raise ValueError(f"image must be (N, C, H, W) or (N, C, D, H, W); got {tuple(image.shape)}")
    spatial = tuple(image.shape[2:])
    if labels is not None and (
        labels.shape[0] != image.shape[0] or tuple(labels.shape[1:]) != spatial
    ):
        raise ValueError(f"labels {tuple(labels.shape)} do not match image {tuple(image.shape)}")
    if clean is not None and (
        clean.shape[0] != image.shape[0] or tuple(clean.shape[2:]) != spatial
    ):
        raise ValueError(f"clean {tuple(clean.shape)} does not match image {tuple(image.shape)}")


def _dihedral(x: torch.Tensor, k: int, flip: bool, flip_depth: bool, channel_axis: bool):
    """Apply one symmetry to one sample (``channel_axis``: x has a leading channel axis)."""
    h, w = x.dim() - 2, x.dim() - 1
    if flip:
        x = torch.flip(x, (w,))
    if k:
        x = torch.rot90(x, k, (h, w))
    if flip_depth:
        x = torch.flip(x, (1 if channel_axis else 0,))
    return x


def weak(
    image: torch.Tensor,
    labels: torch.Tensor | None = None,
    clean: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Random flips, 90° rotations and transposes, the same for image, labels, clean.

    Non-square slices are only flipped and rotated by 180° (a 90° turn would change
    their shape). Returns new tensors; the inputs are not modified.
    """
    _check(image, labels, clean)
    g = _generator(generator, seed)
    square = image.shape[-1] == image.shape[-2]
    three_d = image.dim() == 5
    outs_i, outs_l, outs_c = [], [], []
    for n in range(image.shape[0]):
        k = (
            int(torch.randint(4, (), generator=g))
            if square
            else 2 * int(torch.randint(2, (), generator=g))
        )
        flip = bool(torch.randint(2, (), generator=g))
        flip_depth = three_d and bool(torch.randint(2, (), generator=g))
        outs_i.append(_dihedral(image[n], k, flip, flip_depth, True))
        if labels is not None:
            outs_l.append(_dihedral(labels[n], k, flip, flip_depth, False))
        if clean is not None:
            outs_c.append(_dihedral(clean[n], k, flip, flip_depth, True))
    return (
        torch.stack(outs_i),
        torch.stack(outs_l) if labels is not None else None,
        torch.stack(outs_c) if clean is not None else None,
    )


def _gaussian_kernel(sigma: float, device, dtype) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of one sample (C, *spatial), the same for every channel."""
    k = _gaussian_kernel(sigma, x.device, x.dtype)
    r = k.numel() // 2
    spatial = x.dim() - 1
    y = x.unsqueeze(1)  # (C, 1, *spatial): channels as batch, one kernel for all
    conv = F.conv2d if spatial == 2 else F.conv3d
    for axis in range(spatial):
        shape = [1, 1] + [1] * spatial
        shape[2 + axis] = k.numel()
        pad = [0, 0] * spatial
        pad[2 * (spatial - 1 - axis)] = r
        pad[2 * (spatial - 1 - axis) + 1] = r
        y = conv(F.pad(y, pad, mode="replicate"), k.view(shape))
    return y.squeeze(1)


def equalize_local(x: torch.Tensor, tiles: int = 4, levels: int = 64) -> torch.Tensor:
    """Local histogram equalisation of one sample ``(C, H, W)`` or ``(C, D, H, W)``.

    The last two axes are cut into ``tiles × tiles`` tiles. Each tile's cumulative
    distribution (``levels`` quantiles over all its channels together, so every slice of
    a 2.5D stack is mapped alike) maps values to [0, 1], and every voxel blends the maps
    of the four nearest tile centres bilinearly, as CLAHE does (without clipping). The
    result keeps the sample's mean and standard deviation; at any one voxel position the
    mapping is monotone in the value.
    """
    if isinstance(tiles, bool) or not isinstance(tiles, int) or tiles < 1:
        raise ValueError(f"tiles must be a positive integer, got {tiles!r}")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an integer ≥ 2, got {levels!r}")
    h, w = x.shape[-2], x.shape[-1]
    ty, tx = min(tiles, h), min(tiles, w)
    ys = torch.linspace(0, h, ty + 1, device=x.device).round().long()
    xs = torch.linspace(0, w, tx + 1, device=x.device).round().long()
    q = torch.linspace(0, 1, levels, device=x.device)
    flat = x.contiguous()
    mapped = []
    for i in range(ty):
        for j in range(tx):
            tile = x[..., ys[i] : ys[i + 1], xs[j] : xs[j + 1]].reshape(-1).float()
            knots = torch.quantile(tile, q).to(x.dtype).contiguous()
            idx = torch.searchsorted(knots, flat).clamp(1, levels - 1)
            lo, hi = knots[idx - 1], knots[idx]
            frac = ((flat - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)
            mapped.append(((idx - 1).to(x.dtype) + frac) / (levels - 1))
    maps = torch.stack(mapped, dim=-1).unflatten(-1, (ty, tx))  # (..., H, W, ty, tx)

    def neighbours(size: int, cuts: torch.Tensor, n: int):
        centres = (cuts[:-1] + cuts[1:]).to(x.dtype) / 2
        pos = torch.arange(size, device=x.device, dtype=x.dtype)
        low = (torch.searchsorted(centres, pos) - 1).clamp(0, max(n - 2, 0))
        high = (low + 1).clamp(max=n - 1)
        gap = (centres[high] - centres[low]).clamp_min(1e-12)
        frac = ((pos - centres[low]) / gap).clamp(0, 1) if n > 1 else torch.zeros_like(pos)
        return low, high, frac

    y0, y1, fy = neighbours(h, ys, ty)
    x0, x1, fx = neighbours(w, xs, tx)
    py = torch.arange(h, device=x.device)[:, None]
    px = torch.arange(w, device=x.device)[None, :]
    out = torch.zeros_like(x)
    for iy, wy in ((y0, 1 - fy), (y1, fy)):
        for ix, wx in ((x0, 1 - fx), (x1, fx)):
            out = out + maps[..., py, px, iy[:, None], ix[None, :]] * (wy[:, None] * wx[None, :])
    return (out - out.mean()) / out.std().clamp_min(1e-12) * x.std() + x.mean()


def _kornia():
    try:
        import kornia
    except ImportError:
        raise ImportError(
            "the 'clahe' augmentation needs kornia: pip install kornia "
            '(or pip install "xctdask[papers]")'
        ) from None
    return kornia


def clahe(x: torch.Tensor, clip_limit: float = 4.0, tiles: int = 8) -> torch.Tensor:
    """Contrast-limited adaptive histogram equalisation of one sample ``(C, H, W)`` or
    ``(C, D, H, W)`` (kornia's ``equalize_clahe`` on every 2-D slice).

    The sample is rescaled to [0, 1] for the equalisation, and the result keeps the
    sample's mean and standard deviation.

    Examples
    --------
    >>> x = torch.rand(3, 32, 32)
    >>> y = clahe(x, clip_limit=2.0, tiles=4)
    >>> y.shape, bool(torch.isclose(y.mean(), x.mean(), atol=1e-4))
    (torch.Size([3, 32, 32]), True)
    """
    kornia = _kornia()
    lo, hi = x.min(), x.max()
    flat = ((x - lo) / (hi - lo).clamp_min(1e-12)).reshape(-1, 1, *x.shape[-2:]).float()
    grid = (min(tiles, x.shape[-2]), min(tiles, x.shape[-1]))
    out = kornia.enhance.equalize_clahe(flat, clip_limit=float(clip_limit), grid_size=grid)
    out = out.reshape(x.shape).to(x.dtype)
    return (out - out.mean()) / out.std().clamp_min(1e-12) * x.std() + x.mean()


OPS = ("gamma", "contrast", "blur", "equalize", "clahe", "noise", "cutout")
#: The default strong set: Unbiased Teacher's (colour jitter → contrast and brightness,
#: blur, cutout) plus noise. Gamma and local equalisation remap grey values non-linearly
#: or tile by tile, and in CT the grey value is what identifies a material: with them,
#: self-correction of a 64×256×256 fibre composite drifted from 0.93 to 0.57 mIoU
#: (``benchmarks/end_to_end.py``); without them it held 0.94.
DEFAULT_OPS = ("contrast", "blur", "noise", "cutout")


@dataclass
class StrongAugment:
    """Settings of :func:`strong`; each operation happens with probability ``p``.

    Attributes
    ----------
    p : float
        Probability of each operation, independently.
    gamma : (float, float)
        Range of the gamma exponent, applied to the sample rescaled to [0, 1].
    contrast, brightness : (float, float)
        Contrast factor about the mean; brightness shift in units of the sample's std.
    noise_sigma : (float, float)
        Range of the Gaussian noise sigma, in units of the sample's std; the sigma itself
        is drawn uniformly for each sample.
    blur_sigma : (float, float)
        Range of the Gaussian blur sigma (voxels).
    equalize_tiles : int
        Tiles per side for local histogram equalisation (``equalize``, unclipped).
    clahe_clip, clahe_tiles : float, int
        Clip limit and tiles per side of ``clahe``: contrast-limited adaptive histogram
        equalisation, the Albumentations ``CLAHE`` op the SR-CT paper's strong
        augmentation uses (its defaults: clip limit 4, 8×8 tiles), computed by kornia's
        ``equalize_clahe`` on the sample rescaled to [0, 1] (needs ``kornia``:
        ``pip install "xctdask[papers]"``).
    cutout_fraction : (float, float)
        Side of the (one to three) cut-out boxes, as a fraction of each side; boxes are
        filled with the sample mean.
    ops : tuple of str
        The operations in use, applied in this order: ``gamma``, ``contrast``,
        ``blur``, ``equalize``, ``clahe``, ``noise``, ``cutout``. Default :data:`DEFAULT_OPS`
        (contrast, blur, noise, cutout); add ``gamma`` or ``equalize`` explicitly.
    """

    p: float = 0.5
    gamma: tuple[float, float] = (0.7, 1.5)
    contrast: tuple[float, float] = (0.75, 1.25)
    brightness: tuple[float, float] = (-0.2, 0.2)
    noise_sigma: tuple[float, float] = (0.0, 0.5)
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    equalize_tiles: int = 4
    clahe_clip: float = 4.0
    clahe_tiles: int = 8
    cutout_fraction: tuple[float, float] = (0.1, 0.3)
    ops: tuple[str, ...] = DEFAULT_OPS

    def __post_init__(self) -> None:
        unknown = set(self.ops) - set(OPS)
        if unknown:
            raise ValueError(f"unknown strong augmentations {sorted(unknown)}; choose from {OPS}")
        if not 0 <= self.p <= 1:
            raise ValueError(f"p must be in [0, 1], got {self.p!r}")
        # checked here, before training: a bad range fails (or makes NaN patches) only
        # when a random step first draws the operation
        for name, low_limit, strict in (
            ("gamma", 0.0, True),
            ("contrast", 0.0, False),
            ("brightness", -math.inf, False),
            ("noise_sigma", 0.0, False),
            ("blur_sigma", 0.0, True),
            ("cutout_fraction", 0.0, True),
        ):
            _check_range(name, getattr(self, name), low_limit, strict)
        if self.cutout_fraction[1] > 1:
            raise ValueError(
                "cutout_fraction is a fraction of each side, at most 1; "
                f"got {self.cutout_fraction!r}"
            )
        for name in ("equalize_tiles", "clahe_tiles"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.clahe_clip, int | float) and self.clahe_clip >= 0):
            raise ValueError(f"clahe_clip must be ≥ 0 (0: no clipping), got {self.clahe_clip!r}")
        if "clahe" in self.ops:
            _kornia()  # missing kornia is said before training, not at a random step

    def __call__(
        self,
        image: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        return strong(image, self, generator=generator, seed=seed)


def _check_range(name: str, value: Any, low_limit: float, strict: bool) -> None:
    """``value`` must be a (low, high) pair of finite numbers, low ≤ high, low above
    ``low_limit`` (or at it when not ``strict``)."""
    pair = isinstance(value, tuple | list) and len(value) == 2
    if not pair or not all(is_number(v) for v in value):
        raise ValueError(f"{name} must be a (low, high) pair of numbers, got {value!r}")
    low, high = value
    above = low > low_limit if strict else low >= low_limit
    if not above or low > high:
        bound = f"> {low_limit:g}" if strict else f"≥ {low_limit:g}"
        raise ValueError(
            f"{name} must be (low, high) with low {bound} and low ≤ high, got {value!r}"
        )


def _one_strong(x: torch.Tensor, s: StrongAugment, g: torch.Generator) -> torch.Tensor:
    def happens(op: str) -> bool:
        return float(torch.rand((), generator=g)) < s.p and op in s.ops

    mean, std = x.mean(), x.std().clamp_min(1e-12)
    if happens("gamma"):  # gamma on the sample rescaled to [0, 1]
        lo, hi = x.min(), x.max()
        span = (hi - lo).clamp_min(1e-12)
        x = ((x - lo) / span).clamp(0, 1) ** _uniform(g, *s.gamma) * span + lo
    if happens("contrast"):
        c, b = _uniform(g, *s.contrast), _uniform(g, *s.brightness)
        x = (x - mean) * c + mean + b * std
    if happens("blur"):
        x = _blur(x, _uniform(g, *s.blur_sigma))
    if happens("equalize"):
        x = equalize_local(x, s.equalize_tiles)
    if happens("clahe"):
        x = clahe(x, s.clahe_clip, s.clahe_tiles)
    if happens("noise"):
        sigma = _uniform(g, *s.noise_sigma) * float(std)
        device_gen = torch.Generator(device=x.device)
        device_gen.manual_seed(int(torch.randint(2**62, (), generator=g)))
        x = x + sigma * torch.randn(x.shape, generator=device_gen, device=x.device, dtype=x.dtype)
    if happens("cutout"):
        x = x.clone()
        fill = x.mean()
        for _ in range(1 + int(torch.randint(3, (), generator=g))):
            box = []
            for size in x.shape[1:]:
                side = max(1, round(_uniform(g, *s.cutout_fraction) * size))
                start = int(torch.randint(max(1, size - side + 1), (), generator=g))
                box.append(slice(start, start + side))
            x[(slice(None), *box)] = fill
    return x


def noise_fraction(
    image: torch.Tensor,
    fraction: float,
    sigma_max: float,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """Gaussian noise on a random ``fraction`` of the samples of a batch.

    Each chosen sample gets noise of a sigma drawn uniformly in ``[0, sigma_max]``, in
    units of that sample's standard deviation (the noise-robustness study: noise added
    to 0, 25, 50, 75 or 100 % of the training images, each with a random sigma). The
    other samples are returned unchanged.

    Examples
    --------
    >>> x = torch.ones(8, 1, 4, 4) + torch.arange(16.0).view(1, 1, 4, 4)
    >>> y = noise_fraction(x, 0.5, 1.0, seed=0)
    >>> int((y != x).flatten(1).any(1).sum())
    4
    """
    return _noise_on_fraction(
        image,
        fraction,
        lambda g, sample: _uniform(g, 0.0, sigma_max) * float(sample.std().clamp_min(1e-12)),
        _generator(generator, seed),
    )


def _noise_on_fraction(
    image: torch.Tensor,
    fraction: float,
    level: Callable[[torch.Generator, torch.Tensor], float],
    g: torch.Generator,
    *,
    shape: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gaussian noise of std ``level(g, sample)`` on a random ``fraction`` of the
    samples of a batch (a new tensor; the others unchanged): white, or filtered over the
    last two axes by ``shape`` (an amplitude filter of unit mean power)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    n = image.shape[0]
    chosen = torch.randperm(n, generator=g)[: round(fraction * n)]
    out = image.clone()
    if shape is not None:
        shape = shape.to(image.device)  # once per batch, not per sample
    for i in chosen.tolist():
        sigma = level(g, image[i])
        device_gen = torch.Generator(device=image.device)
        device_gen.manual_seed(int(torch.randint(2**62, (), generator=g)))
        noise = torch.randn(image[i].shape, generator=device_gen, device=image.device)
        if shape is not None:
            noise = torch.fft.ifft2(torch.fft.fft2(noise) * shape).real
        out[i] = image[i] + sigma * noise.to(image.dtype)
    return out


def degrade(
    image: torch.Tensor,
    sigma: float,
    fraction: float = 0.5,
    *,
    spectrum: np.ndarray | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """High-quality patches made as noisy as a low-quality scan, on a fraction of a batch.

    For a network fitted on an HQ scan and applied to LQ scans (a 4-D series: one slow
    scan, many fast ones): a random ``fraction`` of the samples gets Gaussian noise of
    standard deviation ``sigma · u``, ``u`` uniform in [0.5, 1.5], in the patches' own
    (normalised) grey values. The other samples are unchanged.

    Without ``spectrum`` the noise is white. With ``spectrum``, a 2-D noise power
    spectrum in NumPy's FFT order (:func:`xctdask.metrics.noise_spectrum`, any side),
    each slice of a patch gets noise of that spectrum's shape, independent from slice
    to slice: white noise filtered in Fourier space by its square root, the spectrum
    read at each of the patch's frequencies from its nearest sample. A reconstruction's
    noise is coloured (FBP's ramp filter, streaks, detector blur), so white noise of the
    same standard deviation puts too little of it where it hurts. ``sigma`` is the
    extra noise of the LQ scan (what ``Segmenter.fit(..., like=lq)`` measures and
    passes, with ``spectrum`` the difference of the two scans' spectra).

    Examples
    --------
    >>> x = torch.zeros(8, 1, 32, 32)
    >>> y = degrade(x, 0.2, 0.5, seed=0)
    >>> int((y != x).flatten(1).any(1).sum()), 0.05 < float(y.std()) < 0.25
    (4, True)
    >>> low = np.zeros((16, 16)); low[:3, :3] = low[-2:, :3] = low[:3, -2:] = low[-2:, -2:] = 1
    >>> z = degrade(torch.zeros(2, 1, 32, 32), 0.2, 1.0, spectrum=low, seed=0)
    >>> bool(z.diff(dim=-1).std() < z.std())  # low frequencies only: smooth noise
    True
    """
    if not sigma >= 0:
        raise ValueError(f"sigma must be ≥ 0, got {sigma!r}")
    shape = None if spectrum is None else _spectrum_filter(spectrum, tuple(image.shape[-2:]))
    return _noise_on_fraction(
        image,
        fraction,
        lambda g, _: sigma * _uniform(g, 0.5, 1.5),
        _generator(generator, seed),
        shape=shape,
    )


def _spectrum_filter(spectrum: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """The amplitude filter, of unit mean power, that gives white noise ``spectrum``'s
    shape on a ``size`` grid (nearest frequency sample)."""
    spectrum = np.asarray(spectrum, dtype=np.float64)
    if spectrum.ndim != 2 or not np.isfinite(spectrum).all() or (spectrum < 0).any():
        raise ValueError("spectrum must be a 2-D array of finite, non-negative powers")
    if not spectrum.sum() > 0:
        raise ValueError("spectrum holds no power (all zero)")
    rows = np.rint(np.fft.fftfreq(size[0]) * spectrum.shape[0]).astype(int) % spectrum.shape[0]
    cols = np.rint(np.fft.fftfreq(size[1]) * spectrum.shape[1]).astype(int) % spectrum.shape[1]
    power = spectrum[np.ix_(rows, cols)]
    if not power.sum() > 0:
        power = np.ones(size)  # all the power between the samples the patch reads: white
    return torch.from_numpy(np.sqrt(power / power.mean())).float()


def strong(
    image: torch.Tensor,
    settings: StrongAugment | None = None,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """Random intensity changes per sample (see :class:`StrongAugment`); image only.

    Returns a new tensor of the same shape, dtype and device.
    """
    _check(image, None, None)
    if not image.is_floating_point():
        raise TypeError(f"strong augmentation needs a float image, got {image.dtype}")
    settings = settings or StrongAugment()
    g = _generator(generator, seed)
    return torch.stack([_one_strong(image[n], settings, g) for n in range(image.shape[0])])
