"""Phantoms the library was not designed on: porespy's geometry, another CT model.

The library's own phantoms (:mod:`xctdask.phantoms`) and its methods were made by the
same people; its gains on them did not carry over to phantoms made elsewhere. These
two are built from other people's generators and a forward model with effects the
library's simulator does not have:

* geometry from porespy's generators (Gostick et al., porespy): ``sand`` is
  polydisperse spheres (quartz grains) in a polymer tube with cracks through the
  grains and a few large voids where the packing is missing; ``fibre`` is porespy's
  random cylinders (glass fibres within 25° of the z–y plane, at any angle in it) in
  epoxy with about 1 % pores (4-voxel spheres), a sample
  **larger than the field of view** (interior tomography: truncated projections);
* partial volume: the geometry is drawn at twice the resolution and attenuation
  averaged over each voxel (2×2×2 subvoxels); the truth is the class of largest share;
* a polychromatic beam (five energies; photo-electric ``E^-3`` plus Compton parts
  per material), so beam hardening gives cupping and streaks between dense objects;
* propagation phase contrast: the projection is edge-enhanced by its Laplacian along
  the detector (dark/bright fringes at every interface);
* detector blur (Gaussian, σ 0.7 pixel), Poisson noise, no ring artefacts;
* filtered back projection (scikit-image, Shepp-Logan filter); truncated sinograms
  are padded with their edge values first, as local tomography does.

HQ: 360 angles, 5·10⁴ photons per pixel; LQ: every fourth angle (90), 4·10³ photons.
The truth outside the reconstruction circle is 255 (not scored).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, stats
from skimage.transform import iradon, radon

KINDS = ("sand", "fibre")
ENERGIES = np.array([15.0, 20.0, 25.0, 30.0, 35.0])  # keV
SPECTRUM = np.array([0.15, 0.30, 0.28, 0.18, 0.09])
HQ_ANGLES, LQ_EVERY = 360, 4
HQ_PHOTONS, LQ_PHOTONS = 5e4, 1e4
FRINGE = 0.004  # phase-contrast strength: relative intensity per unit of curvature


@dataclass(frozen=True)
class Material:
    """Attenuation per pixel at 20 keV, its photo-electric share, and density (phase)."""

    mu20: float
    photo: float
    density: float

    def mu(self, energy: np.ndarray) -> np.ndarray:
        return self.mu20 * (self.photo * (20.0 / energy) ** 3 + (1 - self.photo))


MATERIALS = {
    # class 0 is air in both; the other classes' materials in class order
    "sand": (Material(0.0028, 0.55, 1.2), Material(0.0095, 0.88, 2.65)),
    "fibre": (Material(0.0016, 0.55, 1.2), Material(0.0150, 0.90, 2.55)),
}
CLASSES = {"sand": ["air", "container", "grain"], "fibre": ["pore", "epoxy", "glass fibre"]}


def _sand(shape2: tuple[int, int, int], seed: int) -> np.ndarray:
    """Class map at twice the resolution: 0 air, 1 tube, 2 grains."""
    import porespy as ps

    z, y, x = shape2
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:y, :x]
    r = np.hypot(yy - (y - 1) / 2, xx - (x - 1) / 2)
    outer, wall = 0.46 * x, 0.04 * x
    tube = (r <= outer) & (r > outer - wall)
    inside = r <= outer - wall
    dist = stats.uniform(loc=0.022 * x, scale=0.03 * x)
    grains = ~ps.generators.polydisperse_spheres(
        list(shape2), porosity=0.42, dist=dist, nbins=5, r_min=4, seed=seed
    )
    zz = np.arange(z)[:, None, None]
    for _ in range(12):  # thin planar cracks through the grains
        normal = rng.normal(size=3)
        normal /= np.linalg.norm(normal)
        centre = rng.uniform([0, 0.2 * y, 0.2 * x], [z, 0.8 * y, 0.8 * x])
        d = (zz - centre[0]) * normal[0] + (yy - centre[1]) * normal[1]
        d = d + (xx - centre[2]) * normal[2]
        near = np.hypot(zz - centre[0], np.hypot(yy - centre[1], xx - centre[2])) < 0.12 * x
        grains &= ~((np.abs(d) < 1.2) & near)
    for _ in range(3):  # voids: regions the packing missed
        c = rng.uniform([0, 0.3 * y, 0.3 * x], [z, 0.7 * y, 0.7 * x])
        radius = rng.uniform(0.06, 0.1) * x
        grains &= np.hypot(zz - c[0], np.hypot(yy - c[1], xx - c[2])) > radius
    labels = np.zeros(shape2, np.uint8)
    labels[:, tube] = 1
    labels[(grains & inside[None])] = 2
    return labels


def _fibre(shape2: tuple[int, int, int], seed: int) -> np.ndarray:
    """Class map at twice the resolution: 0 pores, 1 epoxy, 2 glass fibres."""
    import porespy as ps

    fibres = ~ps.generators.cylinders(
        list(shape2), r=5, porosity=0.72, phi_max=25, theta_max=90, seed=seed
    )
    pores = ~ps.generators.overlapping_spheres(list(shape2), r=4, porosity=0.9955, seed=seed + 1)
    labels = np.ones(shape2, np.uint8)
    labels[fibres] = 2
    labels[pores & ~fibres] = 0
    return labels


def _pool(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class volume fractions of each 2×2×2 block, and the majority class."""
    z, y, x = labels.shape
    frac = np.stack(
        [
            (labels == c).reshape(z // 2, 2, y // 2, 2, x // 2, 2).mean(axis=(1, 3, 5))
            for c in range(n)
        ]
    ).astype(np.float32)
    return frac, frac.argmax(axis=0).astype(np.uint8)


def _scan_slice(args: tuple) -> tuple[np.ndarray, np.ndarray]:
    """HQ and LQ reconstructions of one slice from its non-air material fractions."""
    frac, kind, fov, seed = args
    rng = np.random.default_rng(seed)
    mats = MATERIALS[kind]
    theta = np.linspace(0.0, 180.0, HQ_ANGLES, endpoint=False)
    paths = [radon(fraction, theta, circle=False) for fraction in frac]
    width = paths[0].shape[0]
    lo = (width - fov) // 2
    truncated = frac.shape[-1] > fov  # the sample is wider than the field of view
    paths = [p[lo : lo + fov] for p in paths]  # the detector sees the field of view only
    line = sum(m.mu(ENERGIES)[:, None, None] * p[None] for m, p in zip(mats, paths, strict=True))
    intensity = np.tensordot(SPECTRUM, np.exp(-line), axes=1)
    phase = sum(m.density * p for m, p in zip(mats, paths, strict=True))
    curvature = ndimage.correlate1d(phase, [1.0, -2.0, 1.0], axis=0, mode="nearest")
    intensity = intensity * np.clip(1 - FRINGE * curvature, 0.5, 1.5)
    intensity = ndimage.gaussian_filter1d(np.clip(intensity, 1e-6, None), 0.7, axis=0)
    out = []
    for photons, every in ((HQ_PHOTONS, 1), (LQ_PHOTONS, LQ_EVERY)):
        counts = rng.poisson(photons * intensity[:, ::every]).clip(1, None)
        sino = -np.log(counts / photons)
        pad = fov // 4 if truncated else 0
        sino = np.pad(sino, ((pad, pad), (0, 0)), mode="edge")  # local-tomography padding
        rec = iradon(sino, theta[::every], filter_name="shepp-logan", circle=False,
                     output_size=fov + 2 * pad)  # fmt: skip
        out.append(rec[pad : pad + fov, pad : pad + fov].astype(np.float32))
    return out[0], out[1]


def make(kind: str, shape: tuple[int, int, int], seed: int = 0, workers: int = 2) -> dict:
    """HQ and LQ scans of ``shape`` with the truth (255 outside the field of view).

    The fibre sample is 1.5× wider than the field of view (interior tomography); the
    sand tube fits inside it.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    z, y, x = shape
    if y != x:
        raise ValueError(f"the slices must be square, got {y}×{x}")
    wide = x if kind == "sand" else round(1.5 * x / 2) * 2
    geometry = (_sand if kind == "sand" else _fibre)((2 * z, 2 * wide, 2 * wide), seed)
    frac, labels = _pool(geometry, 3)
    del geometry
    jobs = [(frac[1:, i], kind, x, seed * 100_003 + i) for i in range(z)]  # air absorbs nothing
    with ProcessPoolExecutor(workers) as pool:
        scans = list(pool.map(_scan_slice, jobs, chunksize=4))
    hq = np.stack([s[0] for s in scans])
    lq = np.stack([s[1] for s in scans])
    lo = (wide - x) // 2
    truth = labels[:, lo : lo + x, lo : lo + x].copy()
    yy, xx = np.mgrid[:x, :x]
    outside = np.hypot(yy - (x - 1) / 2, xx - (x - 1) / 2) > x / 2 - 1
    truth[:, outside] = 255
    return {"hq": hq, "lq": lq, "truth": truth, "classes": CLASSES[kind]}
