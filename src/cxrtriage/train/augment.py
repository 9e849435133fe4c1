"""Training augmentation of the urgency CNN, in three generations, on batches of N x 1 x S x S tensors in [0, 1].

Design decisions:
* No horizontal flips in any generation: chest anatomy is lateralised (heart on the patient's left), a flipped film
  is not a plausible radiograph.
* gen1: rotation +-8 deg, scale 0.9-1.1, shift +-6%, gamma/contrast/brightness jitter.
* gen2: gen1's geometry, wider exposure and contrast, noise and lost resolution (the ways another site's detector
  differs).
* gen3 (issue 24, invariance to acquisition): the ways a hospital's export differs from the training sources, each
  switched on per image with its own probability (:class:`Acquisition`): aspect-ratio jitter 0.75-1.33 (two sources
  were squashed to squares by their publishers; the same range as the gate's squashed variants in
  :mod:`cxrtriage.imaging.acquisition`), rotation +-15 deg, histogram equalisation blended into the image, blur or
  unsharp-mask sharpening, lost resolution, gamma/contrast/brightness as gen2, gaussian noise and JPEG artefacts
  (quality 30-89). Geometry pads with black, not the edge pixels: a film rotated or shrunk in its export leaves black
  corners and strips, which the exposed-field stage may keep (it crops to the field's box).
* Every gen3 parameter is drawn for every image whether its operation is on or not, so the generator's stream does
  not depend on the probabilities: with one seed, switching one operation on changes only what that operation does
  (the tests use this), and a run is reproducible from its seed.
* Masks (lung fields, radiologist boxes for the activation-map losses) get the same geometric transform.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

LEVELS = ("gen1", "gen2", "gen3")
#: draws N values uniform in [lo, hi) from the batch's generator
Uniform = Callable[[float, float], torch.Tensor]


@dataclass(frozen=True)
class Acquisition:
    """gen3: the probability that each acquisition operation is applied to an image."""

    aspect: float = 0.5
    equalise: float = 0.3
    blur_sharpen: float = 0.4
    resolution: float = 0.3
    noise: float = 0.5
    jpeg: float = 0.3


GEN3 = Acquisition()
BLUR_SIGMA = (0.6, 2.0)  # gaussian sigma in pixels of the input (256 px for the bundled CNN)
JPEG_QUALITY = (30, 90)


def augment_level(level: str | bool) -> str:
    """``level`` as one of :data:`LEVELS`; a bool is the old ``strong`` flag (True: gen2, False: gen1)."""
    if isinstance(level, bool):
        return "gen2" if level else "gen1"
    if level not in LEVELS:
        raise ValueError(f"augmentation must be one of {LEVELS}, got {level!r}")
    return level


def augment(
    x: torch.Tensor,
    gen: torch.Generator,
    level: str | bool = "gen1",
    masks: torch.Tensor | None = None,
    mask_size: int = 16,
    acquisition: Acquisition = GEN3,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x: N x 1 x S x S in [0,1] -> the augmented batch, in [0,1]. ``level``: "gen1", "gen2" or "gen3" (True/False:
    the old ``strong`` flag). ``masks`` (N x K x any size) get the same geometric transform, sampled at ``mask_size``
    (the CAM's grid); then (x, masks) is returned. ``acquisition``: gen3's probabilities."""
    level = augment_level(level)
    n = x.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    if level == "gen3":
        return _gen3(x, gen, u, masks, mask_size, acquisition)
    x, moved = _geometry(x, masks, mask_size, u(-8, 8), u(0.9, 1.1), torch.ones(n), u(-0.06, 0.06), u(-0.06, 0.06))
    strong = level == "gen2"
    x = _exposure(x, u, *((0.45, 0.35, 0.12) if strong else (0.22, 0.2, 0.08)))
    if strong:
        s = x.shape[-1]
        for i in range(n):
            if torch.rand(1, generator=gen).item() < 0.3:
                x[i : i + 1] = _lose_resolution(x[i : i + 1], int(s / float(u(1.5, 3.0)[0])))
        x = (x + torch.randn(x.shape, generator=gen) * u(0.0, 0.025).view(n, 1, 1, 1)).clamp(0, 1)
    return x if moved is None else (x, moved)


def _gen3(
    x: torch.Tensor,
    gen: torch.Generator,
    u: Uniform,
    masks: torch.Tensor | None,
    mask_size: int,
    p: Acquisition,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The acquisition augmentation (see the module docstring); every parameter drawn whether used or not."""
    n, s = x.shape[0], x.shape[-1]

    def on(prob: float) -> torch.Tensor:
        return torch.rand(n, generator=gen) < prob

    def per_image(v: torch.Tensor) -> torch.Tensor:
        return v.view(-1, 1, 1, 1)

    aspect = torch.where(on(p.aspect), torch.exp(u(math.log(0.75), math.log(1.33))), torch.ones(n))
    x, moved = _geometry(x, masks, mask_size, u(-15, 15), u(0.9, 1.1), aspect, u(-0.06, 0.06), u(-0.06, 0.06), "zeros")
    # detector: lost resolution, then blur (amount < 0, towards the blurred image) or unsharp masking (amount > 0)
    # (the factor in steps of 0.25: one resize per step for the whole batch, not one per image)
    size, some = (s / ((u(1.5, 3.0) * 4).round() / 4)).long(), on(p.resolution)
    for k in size[some].unique().tolist():
        x[some & (size == k)] = _lose_resolution(x[some & (size == k)], k)
    # only the images an operation is on are filtered
    sigma, sharpen, some = u(*BLUR_SIGMA), on(0.5), on(p.blur_sharpen)
    amount = torch.where(sharpen, 1.5, -1.0) * u(0.4, 1.0)
    if bool(some.any()):
        part = x[some]
        x[some] = (part + per_image(amount[some]) * (part - gaussian_blur(part, sigma[some]))).clamp(0, 1)
    # processing: equalisation blended in, then gamma/contrast/brightness as gen2
    blend, some = u(0.3, 1.0), on(p.equalise)
    if bool(some.any()):
        part, w = x[some], per_image(blend[some])
        x[some] = (1 - w) * part + w * equalise(part)
    x = _exposure(x, u, 0.45, 0.35, 0.12)
    # noise, then the publisher's JPEG compression
    sd = torch.where(on(p.noise), u(0.005, 0.03), torch.zeros(n))
    x = (x + torch.randn(x.shape, generator=gen) * per_image(sd)).clamp(0, 1)
    quality, some = u(*JPEG_QUALITY).long().tolist(), on(p.jpeg)
    if bool(some.any()):  # each image through Pillow in numpy, one copy back into the batch
        films = (x[some, 0].numpy() * 255).round().astype(np.uint8)
        picked = torch.nonzero(some).flatten().tolist()
        x[some, 0] = torch.from_numpy(np.stack([jpeg_roundtrip(a, quality[i]) for a, i in zip(films, picked)])) / 255
    return x if moved is None else (x, moved)


def _geometry(
    x: torch.Tensor,
    masks: torch.Tensor | None,
    mask_size: int,
    degrees: torch.Tensor,
    scale: torch.Tensor,
    aspect: torch.Tensor,
    tx: torch.Tensor,
    ty: torch.Tensor,
    padding: str = "border",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rotate, scale (width by ``scale * sqrt(aspect)``, height by ``scale / sqrt(aspect)``) and shift each image,
    and its masks by the same transform (zeros outside). Never mirrors: both scales are positive."""
    n = x.shape[0]
    angle = degrees * math.pi / 180
    sx, sy = scale * aspect.sqrt(), scale / aspect.sqrt()
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps output to input coordinates: R(angle) @ diag(1/sx, 1/sy), then the shift
    theta = torch.stack([torch.stack([cos / sx, -sin / sy, tx], 1), torch.stack([sin / sx, cos / sy, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)
    if masks is None:
        return x, None
    mgrid = F.affine_grid(theta, [n, masks.shape[1], mask_size, mask_size], align_corners=False)
    return x, F.grid_sample(masks, mgrid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _exposure(x: torch.Tensor, u: Uniform, g: float, c: float, b: float) -> torch.Tensor:
    """Gamma in exp(+-g), contrast 1 +- c about the image mean, brightness +- b."""
    n = x.shape[0]
    gamma = torch.exp(u(-g, g)).view(n, 1, 1, 1)
    x = x.clamp(1e-6, 1).pow(gamma)
    contrast = u(1 - c, 1 + c).view(n, 1, 1, 1)
    bright = u(-b, b).view(n, 1, 1, 1)
    mean = x.mean(dim=(2, 3), keepdim=True)
    return ((x - mean) * contrast + mean + bright).clamp(0, 1)


def _lose_resolution(x: torch.Tensor, k: int) -> torch.Tensor:
    """Down to k x k (area) and back up (bilinear): a coarser detector or a thumbnail someone enlarged."""
    s = x.shape[-1]
    return F.interpolate(F.interpolate(x, size=(k, k), mode="area"), size=(s, s), mode="bilinear", align_corners=False)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each image of N x 1 x S x S blurred with its own ``sigma`` (N,), separable, one grouped convolution per axis,
    reflected at the edges."""
    n = x.shape[0]
    r = math.ceil(3 * float(sigma.max()))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None].to(x.dtype) ** 2))
    k = k / k.sum(1, keepdim=True)  # (N, 2r+1)
    y = F.pad(x.transpose(0, 1), (r, r, r, r), mode="reflect")  # 1 x N x S+2r x S+2r: one channel per image
    y = F.conv2d(y, k.view(n, 1, 1, -1), groups=n)
    y = F.conv2d(y, k.view(n, 1, -1, 1), groups=n)
    return y.transpose(0, 1)


def equalise(x: torch.Tensor, step: int = 4) -> torch.Tensor:
    """Histogram equalisation of each image of N x 1 x S x S in [0,1] (256 grey levels, the lowest level kept at 0).
    The histogram is counted on every ``step``-th pixel in each direction (4096 pixels of a 256 px film, plenty for
    256 levels, and 16 times less counting)."""
    n = x.shape[0]
    q = (x.clamp(0, 1) * 255).round().long()
    sample = q[..., ::step, ::step].reshape(n, -1)
    hist = torch.zeros(n, 256, dtype=x.dtype).scatter_add_(1, sample, torch.ones_like(sample, dtype=x.dtype))
    cdf = hist.cumsum(1)
    lowest = cdf.gather(1, sample.min(1, keepdim=True).values)
    lut = (cdf - lowest) / (cdf[:, -1:] - lowest).clamp(min=1)
    return lut.clamp(0, 1).gather(1, q.view(n, -1)).view_as(x)


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """One 8-bit S x S image through a JPEG at ``quality`` and back (Pillow, about half a millisecond at 256 px)."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im, dtype=np.float32)
