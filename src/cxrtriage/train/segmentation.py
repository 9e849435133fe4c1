"""Train the bundled lung-and-heart segmentation network (a small U-Net, plain torch) on JSRT with SCR masks.

Design decisions:
* Three sigmoid outputs in :data:`~cxrtriage.data.JSRT_STRUCTURES` order (patient's right lung, left lung, heart);
  no horizontal flips, because the side is part of the answer.
* JSRT is one site, one detector, adult PA films: the augmentation is there so the network also finds the lungs
  on other sites (NIH AP/PA, pediatric, DICOM): exposure (gamma, contrast, brightness), noise, resolution (down and
  up again), rotation, scale and shift with black borders (collimation, cropping), burned-in bright markers and
  thin bright lines (tubes, wires).
* The shared preprocessing is the model's own (``window: percentile-1-99`` after the 8-bit resize): JSRT's low
  contrast and another site's high contrast reach the network alike.
* Loss: binary cross-entropy plus soft Dice per structure; best epoch by mean validation Dice.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cxrtriage.data import JSRT_STRUCTURES, JsrtRecord, jsrt_records, jsrt_split
from cxrtriage.imaging.load import load_image
from cxrtriage.imaging.preprocess import PERCENTILE_WINDOW, QUANTIZE_UINT8, SQUASH_BILINEAR, from_cache, to_cache
from cxrtriage.train.trainer import apply_window


@dataclass
class SegTrainConfig:
    data_dir: str
    out_dir: str = "runs/segment"
    epochs: int = 60
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    input_size: int = 192
    widths: tuple[int, ...] = (8, 16, 32, 64, 96)
    seed: int = 1202
    threads: int = 2
    limit: int | None = None  # cap on images per part (smoke tests only)
    extra: dict = field(default_factory=dict)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SegNet(nn.Module):
    """A small U-Net: max-pool encoder, bilinear-upsampling decoder with skip connections, one logit per structure."""

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 64, 96), out_channels: int = len(JSRT_STRUCTURES)) -> None:
        super().__init__()
        self.enc = nn.ModuleList()
        cin = 1
        for w in widths:
            self.enc.append(nn.Sequential(_conv_bn_relu(cin, w), _conv_bn_relu(w, w)))
            cin = w
        self.dec = nn.ModuleList()
        for skip in reversed(widths[:-1]):
            self.dec.append(nn.Sequential(_conv_bn_relu(cin + skip, skip), _conv_bn_relu(skip, skip)))
            cin = skip
        self.head = nn.Conv2d(cin, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for block in self.dec:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x)


def preprocess_config(size: int, mean: float = 0.5, std: float = 0.3) -> dict:
    """The ``preprocess`` block of segment.json (:func:`~cxrtriage.imaging.preprocess.to_model_input`)."""
    return {
        "input_size": size,
        "resize": SQUASH_BILINEAR,
        "channels": 1,
        "quantize": QUANTIZE_UINT8,
        "window": PERCENTILE_WINDOW,
        "mean": mean,
        "std": std,
    }


def load_mask(path: Path, size: int) -> np.ndarray:
    """A 0/255 SCR mask -> (size, size) float {0, 1} by area-weighted resize and a 0.5 threshold."""
    with Image.open(path) as im:
        m = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    small = np.asarray(Image.fromarray(m, mode="F").resize((size, size), Image.BILINEAR))
    return (small >= 0.5).astype(np.float32)


def load_cache(records: list[JsrtRecord], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, S) uint8 images through the serving path's first half, (N, 3, S, S) float masks."""
    cfg = preprocess_config(size)
    images = np.stack([to_cache(load_image(r.path).pixels, cfg) for r in records])
    masks = np.stack([np.stack([load_mask(r.masks[s], size) for s in JSRT_STRUCTURES]) for r in records])
    return images, masks


def augment(x: torch.Tensor, m: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x: N x 1 x S x S in [0,1] (before the window), m: N x 3 x S x S. Geometric, acquisition and artefact jitter."""
    n, _, s, _ = x.shape

    def u(lo: float, hi: float, k: int = n) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(k, generator=gen)

    angle = u(-12, 12) * math.pi / 180
    scale = u(0.8, 1.25)  # > 1 zooms out (black border, like collimation), < 1 crops the thorax edges
    tx, ty = u(-0.08, 0.08), u(-0.08, 0.08)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, [n, 1, s, s], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    m = (F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False) >= 0.5).float()
    # acquisition: gamma, contrast, brightness
    x = x.clamp(1e-6, 1).pow(torch.exp(u(-0.5, 0.5)).view(n, 1, 1, 1))
    mean = x.mean(dim=(2, 3), keepdim=True)
    x = (x - mean) * u(0.6, 1.4).view(n, 1, 1, 1) + mean + u(-0.1, 0.1).view(n, 1, 1, 1)
    # resolution: half of the batch down-sampled by 1.5-3x and up again
    for i in range(n):
        if torch.rand(1, generator=gen).item() < 0.5:
            k = int(s / float(u(1.5, 3.0, 1)))
            x[i : i + 1] = F.interpolate(
                F.interpolate(x[i : i + 1], size=(k, k), mode="area"), size=(s, s), mode="bilinear", align_corners=False
            )
        # artefacts: a bright marker near an edge, a thin bright line (tube, wire)
        if torch.rand(1, generator=gen).item() < 0.4:
            w, h = int(u(4, 18, 1)), int(u(4, 12, 1))
            cx = int(u(0, s - w, 1))
            cy = int(u(0, s * 0.2, 1)) if torch.rand(1, generator=gen).item() < 0.5 else int(u(s * 0.75, s - h, 1))
            x[i, 0, cy : cy + h, cx : cx + w] = float(u(0.8, 1.0, 1))
        if torch.rand(1, generator=gen).item() < 0.4:
            t = torch.linspace(0, 1, 4 * s)
            x0, y0, x1, y1 = (float(v) for v in u(0.2, 0.8, 4) * s)
            bend = float(u(-0.15, 0.15, 1)) * s
            xs = (x0 + (x1 - x0) * t + bend * torch.sin(math.pi * t)).long().clamp(0, s - 2)
            ys = (y0 + (y1 - y0) * t).long().clamp(0, s - 2)
            level = float(u(0.7, 1.0, 1))
            x[i, 0, ys, xs] = level
            x[i, 0, ys + 1, xs] = level
    x = x + torch.randn(x.shape, generator=gen) * u(0.0, 0.03).view(n, 1, 1, 1)
    return x.clamp(0, 1), m


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(2, 3))
    return (1 - (2 * inter + 1) / (p.sum(dim=(2, 3)) + target.sum(dim=(2, 3)) + 1)).mean()


@torch.no_grad()
def predict_probs(model: nn.Module, images_u8: np.ndarray, mean: float, std: float, batch: int = 16) -> np.ndarray:
    """(N, 3, S, S) probabilities for cached images, through the serving window and normalisation."""
    model.eval()
    out = []
    for i in range(0, len(images_u8), batch):
        x = apply_window(torch.from_numpy(from_cache(images_u8[i : i + batch])).unsqueeze(1), PERCENTILE_WINDOW)
        out.append(torch.sigmoid(model((x - mean) / std)).numpy())
    return np.concatenate(out)


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    """Dice of two binary masks; 1.0 when both are empty."""
    p, t = pred.astype(bool), target.astype(bool)
    denom = p.sum() + t.sum()
    return 1.0 if denom == 0 else float(2 * (p & t).sum() / denom)


def mean_dice(probs: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    return {
        s: float(np.mean([dice(p[c] >= 0.5, m[c]) for p, m in zip(probs, masks)]))
        for c, s in enumerate(JSRT_STRUCTURES)
    }


def train(cfg: SegTrainConfig) -> Path:
    """Train; writes ``checkpoint.pt`` and ``train_log.json`` into ``cfg.out_dir`` and returns the checkpoint."""
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = jsrt_split(jsrt_records(Path(cfg.data_dir)), cfg.seed)
    if cfg.limit:
        parts = {k: v[: cfg.limit] for k, v in parts.items()}
    t0 = time.time()
    S = cfg.input_size
    x_tr, m_tr = load_cache(parts["train"], S)
    x_va, m_va = load_cache(parts["val"], S)
    pre = preprocess_config(S)
    mean, std = float(pre["mean"]), float(pre["std"])
    model = SegNet(tuple(cfg.widths))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(x_tr) / cfg.batch_size) * cfg.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    history, best, state = [], {"dice": -1.0, "epoch": -1}, None
    for epoch in range(cfg.epochs):
        model.train()
        losses = []
        order = rng.permutation(len(x_tr))
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            x = torch.from_numpy(from_cache(x_tr[idx])).unsqueeze(1)
            x, m = augment(x, torch.from_numpy(m_tr[idx]), gen)
            logits = model((apply_window(x, PERCENTILE_WINDOW) - mean) / std)
            loss = F.binary_cross_entropy_with_logits(logits, m) + dice_loss(logits, m)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        val = mean_dice(predict_probs(model, x_va, mean, std), m_va)
        score = float(np.mean(list(val.values())))
        row = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)),
            "val_dice": val,
            "elapsed_s": round(time.time() - t0, 1),
        }
        history.append(row)
        print(json.dumps(row), flush=True)
        if score > best["dice"]:
            best = {"dice": score, "epoch": epoch + 1}
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ckpt = out_dir / "checkpoint.pt"
    torch.save(
        {
            "widths": list(cfg.widths),
            "state_dict": state,
            "preprocess": pre,
            "best": best,
            "structures": list(JSRT_STRUCTURES),
        },
        ckpt,
    )
    log = {
        "command": " ".join(["cxrtriage"] + sys.argv[1:])
        if sys.argv and sys.argv[0].endswith("cxrtriage")
        else " ".join(sys.argv),
        "config": {**asdict(cfg), "data_dir": "CXRTRIAGE_DATA_DIR"},
        "best_epoch": best,
        "history": history,
        "counts": {k: len(v) for k, v in parts.items()},
        "wall_seconds": round(time.time() - t0, 1),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    (out_dir / "train_log.json").write_text(json.dumps(log, indent=2) + "\n")
    return ckpt
