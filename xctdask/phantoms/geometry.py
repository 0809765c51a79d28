"""Sample geometries with exact labels, defined in continuous space and rasterised per slab.

A geometry is drawn once from a seed (a few hundred numbers: fibre axes, pore centres,
Fourier coefficients of a corrosion front, lamella planes) and can then rasterise any
z-range of the volume on its own, so slabs can be made by separate Dask tasks and
the result does not depend on how the volume is chunked.

Lengths are in voxels. Each sample fits inside the cylinder of radius
``0.46 · min(Y, X)`` about the volume's axis, as parallel-beam CT needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["GEOMETRIES", "KINDS", "CorrosionPin", "Crystal", "FibreComposite", "Geometry"]


def _grid(z0: int, z1: int, ny: int, nx: int):
    z = np.arange(z0, z1, dtype=np.float32)[:, None, None]
    y = np.arange(ny, dtype=np.float32)[None, :, None] - (ny - 1) / 2
    x = np.arange(nx, dtype=np.float32)[None, None, :] - (nx - 1) / 2
    return z, y, x


@dataclass
class Geometry:
    """Base class: ``labels(z0, z1)`` and ``attenuation(labels, z0, z1)`` for a slab."""

    shape: tuple[int, int, int]
    seed: int
    class_names: tuple[str, ...] = ()
    # relative linear attenuation of each class (noise-free reference map)
    mu: tuple[float, ...] = ()

    @property
    def radius(self) -> float:
        """Radius (voxels) of the cylinder that holds the sample."""
        return 0.46 * min(self.shape[1:])

    def labels(self, z0: int, z1: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def attenuation(self, labels: np.ndarray, z0: int, z1: int) -> np.ndarray:
        """Noise-free attenuation map of a slab: one value per class by default."""
        return np.asarray(self.mu, np.float32)[labels]


@dataclass
class FibreComposite(Geometry):
    """Short glass fibres and pores in a polymer matrix (like PA66 + 30 % glass fibre).

    Classes: 0 air and pores, 1 matrix, 2 fibre. The sample is a cylinder of radius
    ``0.44 · min(Y, X)``; fibres (radius ≈ 3.5 % of the sample radius, length 60–100 %)
    lean towards y, the injection direction; pores are ellipsoids in the matrix.
    Fractions inside the sample (measured over seeds 0–2): fibres ≈ 13 %, pores ≈ 1 %.
    """

    class_names: tuple[str, ...] = ("air/pore", "matrix", "fibre")
    mu: tuple[float, ...] = (0.0, 1.0, 2.2)
    fibres: np.ndarray = field(init=False, repr=False)  # (n, 8): p0(3), dir(3), length, r
    pores: np.ndarray = field(init=False, repr=False)  # (n, 6): centre(3), radii(3)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1]))
        nz = self.shape[0]
        self.r_sample = r_sample = 0.44 * min(self.shape[1:])
        r_fibre = 0.035 * r_sample
        # fibres per unit volume so that about 15 % of the sample is glass
        mean_len = 0.8 * r_sample
        z_lo, z_hi = -mean_len / 2, nz + mean_len / 2
        sample_volume = np.pi * r_sample**2 * (z_hi - z_lo)
        n_fibres = max(1, int(0.16 * sample_volume / (np.pi * r_fibre**2 * mean_len)))
        length = rng.uniform(0.6, 1.0, n_fibres) * r_sample
        direction = rng.normal(size=(n_fibres, 3)) * 0.35 + (0.0, 1.0, 0.0)
        direction *= rng.choice((-1.0, 1.0), size=(n_fibres, 1))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        rho = r_sample * np.sqrt(rng.uniform(0, 1, n_fibres))
        phi = rng.uniform(0, 2 * np.pi, n_fibres)
        centre = np.stack(
            [rng.uniform(z_lo, z_hi, n_fibres), rho * np.sin(phi), rho * np.cos(phi)], axis=1
        )
        radius = r_fibre * rng.uniform(0.9, 1.1, n_fibres)
        start = centre - direction * length[:, None] / 2
        self.fibres = np.column_stack([start, direction, length, radius]).astype(np.float64)

        pore_volume = 4 / 3 * np.pi * (0.045 * r_sample) ** 3
        n_pores = max(1, int(0.012 * np.pi * r_sample**2 * nz / pore_volume))
        rho = r_sample * np.sqrt(rng.uniform(0, 0.95, n_pores))
        phi = rng.uniform(0, 2 * np.pi, n_pores)
        centre = np.stack([rng.uniform(0, nz, n_pores), rho * np.sin(phi), rho * np.cos(phi)], 1)
        size = 0.045 * r_sample * rng.uniform(0.5, 1.4, (n_pores, 1))
        radii = size * rng.uniform(0.7, 1.3, (n_pores, 3))
        self.pores = np.column_stack([centre, radii])

    def labels(self, z0: int, z1: int) -> np.ndarray:
        _, ny, nx = self.shape
        _, y, x = _grid(z0, z1, ny, nx)
        out = np.zeros((z1 - z0, ny, nx), np.uint8)
        out[np.broadcast_to(y**2 + x**2 <= self.r_sample**2, out.shape)] = 1
        cy, cx = (ny - 1) / 2, (nx - 1) / 2
        for p0z, p0y, p0x, dz, dy, dx, length, r in self.fibres:
            p1 = np.array([p0z + dz * length, p0y + dy * length, p0x + dx * length])
            lo = np.floor(np.minimum((p0z, p0y, p0x), p1) - r).astype(int)
            hi = np.ceil(np.maximum((p0z, p0y, p0x), p1) + r).astype(int) + 1
            zs = slice(max(lo[0], z0), min(hi[0], z1))
            ys = slice(max(lo[1] + int(cy), 0), min(hi[1] + int(cy) + 1, ny))
            xs = slice(max(lo[2] + int(cx), 0), min(hi[2] + int(cx) + 1, nx))
            if zs.start >= zs.stop or ys.start >= ys.stop or xs.start >= xs.stop:
                continue
            gz = np.arange(zs.start, zs.stop)[:, None, None] - p0z
            gy = np.arange(ys.start, ys.stop)[None, :, None] - cy - p0y
            gx = np.arange(xs.start, xs.stop)[None, None, :] - cx - p0x
            t = np.clip(gz * dz + gy * dy + gx * dx, 0, length)
            d2 = (gz - t * dz) ** 2 + (gy - t * dy) ** 2 + (gx - t * dx) ** 2
            region = out[zs.start - z0 : zs.stop - z0, ys, xs]
            region[(d2 <= r * r) & (region == 1)] = 2
        for pz, py, px, rz, ry, rx in self.pores:
            zs = slice(max(int(pz - rz), z0), min(int(pz + rz) + 2, z1))
            ys = slice(max(int(py + cy - ry), 0), min(int(py + cy + ry) + 2, ny))
            xs = slice(max(int(px + cx - rx), 0), min(int(px + cx + rx) + 2, nx))
            if zs.start >= zs.stop or ys.start >= ys.stop or xs.start >= xs.stop:
                continue
            gz = (np.arange(zs.start, zs.stop)[:, None, None] - pz) / rz
            gy = (np.arange(ys.start, ys.stop)[None, :, None] - cy - py) / ry
            gx = (np.arange(xs.start, xs.stop)[None, None, :] - cx - px) / rx
            region = out[zs.start - z0 : zs.stop - z0, ys, xs]
            region[(gz**2 + gy**2 + gx**2 <= 1) & (region == 1)] = 0
        return out


def _smooth_field(rng: np.random.Generator, n_modes: int, amplitude: float):
    """A random smooth periodic function of (angle, height in [0, 1])."""
    k_theta = rng.integers(1, 7, n_modes)
    k_z = rng.uniform(0.5, 4.0, n_modes)
    phase = rng.uniform(0, 2 * np.pi, (2, n_modes))
    weight = amplitude * rng.normal(size=n_modes) / np.sqrt(n_modes)

    def field(theta: np.ndarray, height: np.ndarray) -> np.ndarray:
        total = np.zeros(np.broadcast_shapes(theta.shape, height.shape), np.float32)
        for kt, kz, p1, p2, w in zip(k_theta, k_z, *phase, weight, strict=True):
            total += w * np.cos(kt * theta + p1) * np.cos(2 * np.pi * kz * height + p2)
        return total

    return field


@dataclass
class CorrosionPin(Geometry):
    """A metal pin corroding: a rough metal core, a deposit layer, air pockets in it.

    Classes: 0 air outside, 1 base material (metal), 2 deposits (corrosion products),
    3 air pockets inside the deposits. Pockets have the same attenuation as the air
    outside, so intensity alone cannot tell 0 from 3. The pin has radius
    ``0.55 · 0.46 · min(Y, X)``; fractions inside the outer surface (seeds 0–2): metal
    56–63 %, deposits 36–42 %, pockets 0.2–1.5 %.
    """

    class_names: tuple[str, ...] = ("air", "metal", "deposit", "air pocket")
    mu: tuple[float, ...] = (0.0, 1.0, 0.45, 0.0)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 2]))
        self.r_pin = 0.55 * self.radius
        self.depth = _smooth_field(rng, 12, 0.12)
        self.bulge = _smooth_field(rng, 12, 0.12)
        nz = self.shape[0]
        n = max(3, int(0.5 * nz * self.r_pin / 40))
        theta = rng.uniform(0, 2 * np.pi, n)
        rho = self.r_pin * rng.uniform(0.95, 1.12, n)
        centre = np.stack([rng.uniform(0, nz, n), rho * np.sin(theta), rho * np.cos(theta)], 1)
        radii = self.r_pin * rng.uniform(0.04, 0.09, (n, 1)) * rng.uniform(0.7, 1.3, (n, 3))
        self.pockets = np.column_stack([centre, radii])

    def labels(self, z0: int, z1: int) -> np.ndarray:
        nz, ny, nx = self.shape
        z, y, x = _grid(z0, z1, ny, nx)
        r = np.sqrt(y**2 + x**2)
        theta = np.arctan2(y, x)
        height = z / max(nz, 64)
        r_metal = self.r_pin * (0.9 - np.abs(self.depth(theta, height)))
        r_outer = self.r_pin * (1.05 + np.abs(self.bulge(theta, height)))
        r_outer = np.minimum(r_outer, 0.98 * self.radius)
        out = np.zeros((z1 - z0, ny, nx), np.uint8)
        out[r <= r_outer] = 2
        out[r <= r_metal] = 1
        for pz, py, px, rz, ry, rx in self.pockets:
            inside = ((z - pz) / rz) ** 2 + ((y - py) / ry) ** 2 + ((x - px) / rx) ** 2 <= 1
            out[inside & (out == 2)] = 3
        return out


@dataclass
class Crystal(Geometry):
    """A crystal with thin bright intergrowth lamellae and a contrast drift across it.

    Classes: 0 background, 1 crystal, 2 intergrowth lamellae (1–2.5 voxels thick). The
    attenuation of both phases drifts by ±45 % along a direction across the crystal, so
    the crystal's bright end is as bright as lamellae at its dark end: a single global
    intensity threshold cannot separate them (as in NaMnO2 data). Lamellae keep their
    thickness in voxels, so their share of the crystal depends on size: 6–10 % at
    256², 11–19 % at 128² (seeds 0–2).
    """

    class_names: tuple[str, ...] = ("background", "crystal", "intergrowth")
    mu: tuple[float, ...] = (0.0, 1.0, 1.6)
    drift: float = 0.45

    def __post_init__(self) -> None:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 3]))
        self.angle = rng.uniform(0, np.pi / 2)
        self.half = self.radius * np.array([0.62, 0.5])  # half sizes along rotated y, x
        normal = rng.normal(size=3) * (0.3, 1.0, 1.0)
        self.normal = normal / np.linalg.norm(normal)
        n_lamellae = int(rng.integers(6, 11))
        span = 0.8 * self.radius
        self.offsets = rng.uniform(-span, span, n_lamellae)
        self.thickness = rng.uniform(1.0, 2.5, n_lamellae)
        drift_dir = rng.normal(size=3) * (0.2, 1.0, 1.0)
        self.drift_dir = drift_dir / np.linalg.norm(drift_dir)

    def _inside(self, y, x):
        c, s = np.cos(self.angle), np.sin(self.angle)
        u, v = c * y + s * x, -s * y + c * x
        return (np.abs(u) <= self.half[0]) & (np.abs(v) <= self.half[1])

    def labels(self, z0: int, z1: int) -> np.ndarray:
        nz, ny, nx = self.shape
        z, y, x = _grid(z0, z1, ny, nx)
        zc = z - (nz - 1) / 2
        crystal = np.broadcast_to(self._inside(y, x), (z1 - z0, ny, nx))
        out = np.where(crystal, np.uint8(1), np.uint8(0))
        distance = self.normal[0] * zc + self.normal[1] * y + self.normal[2] * x
        for offset, thick in zip(self.offsets, self.thickness, strict=True):
            out[(np.abs(distance - offset) <= thick / 2) & crystal] = 2
        return out

    def attenuation(self, labels: np.ndarray, z0: int, z1: int) -> np.ndarray:
        nz, ny, nx = self.shape
        z, y, x = _grid(z0, z1, ny, nx)
        along = (
            self.drift_dir[0] * (z - (nz - 1) / 2) + self.drift_dir[1] * y + self.drift_dir[2] * x
        ) / (np.hypot(*self.half))
        factor = 1.0 + self.drift * np.clip(along, -1, 1)
        return (np.asarray(self.mu, np.float32)[labels] * factor).astype(np.float32)


GEOMETRIES: dict[str, type[Geometry]] = {
    "fibre-composite": FibreComposite,
    "corrosion": CorrosionPin,
    "crystal": Crystal,
}
#: The phantom kinds :func:`xctdask.phantoms.make` builds.
KINDS = tuple(GEOMETRIES)
