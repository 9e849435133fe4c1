"""Train the bundled urgency CNN on the committed patient-level split.

Design decisions (measured, see the model card):
* NIH adult images + a random sample of pediatric (Kermany) training images each epoch, mixed in one run:
  the data README measured that this keeps adult AUC and makes the model usable on children, whereas
  NIH-only ranks pediatric images worse than chance.
* Augmentation in :mod:`cxrtriage.train.augment` (``TrainConfig.augment``: gen1, gen2 or gen3's acquisition
  augmentation); none flips left-right, chest anatomy is lateralised.
* Learning rate 1e-3 (one-cycle) with a short exponential moving average of the weights (decay 0.9 per step).
  Measured on NIH-only runs of 20 epochs: lr 3e-3 with a long EMA (0.995) stalled at NIH validation AUC ~0.67,
  while lr 1e-3 with the short EMA reached ~0.89 (runs/exp/*/train_log.json when reproduced).
"""

from __future__ import annotations

import functools
import json
import math
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from cxrtriage.data import (
    SHENZHEN_SPLIT_FILE,
    Record,
    jsrt_urgency_parts,
    load_split_records,
    rsna_opacity_labels,
    split_sha256,
)
from cxrtriage.evaluation.metrics import mean_specificity_at_high_sensitivity, specificity_at_sensitivity
from cxrtriage.imaging.exposed_field import analysed_region
from cxrtriage.imaging.load import load_image
from cxrtriage.imaging.preprocess import PERCENTILE_WINDOW, QUANTIZE_UINT8, SQUASH_BILINEAR, percentile_window, to_cache
from cxrtriage.train.augment import augment, augment_level
from cxrtriage.train.epoch_sampling import draw_epoch
from cxrtriage.train.epoch_selection import epoch_figure
from cxrtriage.train.model import ArchConfig, CXRNet


@dataclass
class TrainConfig:
    data_dir: str
    out_dir: str = "runs/bundled"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 5e-4
    input_size: int = 256
    kermany_per_epoch: int = 1000  # 0 = NIH only
    #: train on the NIH adults (False: leave-one-source-out without NIH; the epoch is then chosen on pediatric
    #: validation AUC and the input mean/std come from the pediatric training images)
    nih_train: bool = True
    ema_decay: float = 0.9
    seed: int = 1129
    threads: int = 2
    limit: int | None = None  # cap on images per dataset and part (smoke tests only)
    arch: dict = field(default_factory=lambda: ArchConfig(stem=(16, 32), widths=(32, 64, 128, 192)).to_dict())
    # The defaults are the shipped generation 3: generation 2's (plain [0,1] input, generation-1 augmentation, weak
    # supervision of the activation map) plus JSRT normals and Shenzhen in training and the epoch chosen for the worst
    # validation source. Options measured and not shipped: prototype/eval/gen2_candidate/ and docs/MODEL.md.
    #: the percentile window of the shared preprocessing (None: the plain [0,1] input)
    window: str | None = None
    #: JSRT films without a nodule as adult negatives of another site (0 = none); their train part only
    jsrt_per_epoch: int = 60
    #: weight of the lung-opacity loss (RSNA radiologist labels; 0 = no opacity head)
    opacity_weight: float = 0.0
    #: the augmentation, one of :data:`~cxrtriage.train.augment.LEVELS` (None: from ``strong_augment``)
    augment: str | None = None
    #: the older flag, kept so that recorded configs stay meaningful: True = gen2; set from ``augment`` (not gen1)
    strong_augment: bool = False
    #: weak supervision of the activation map: the share of the positive map inside the RSNA radiologists' boxes
    #: (boxed training images only) and outside the segmented lung fields (every training image); 0 = off
    box_weight: float = 0.3
    lung_weight: float = 0.3
    #: Shenzhen films (a third adult site, tuberculosis = urgent) sampled per epoch from its train part (0 = none);
    #: its validation part is scored whenever the data is there, so a run without it shows how an unseen site fares
    shenzhen_per_epoch: int = 300
    #: which validation figure picks the epoch: "nih" (generation 2: NIH AUC) or "worst" (the lowest specificity at
    #: sensitivity 0.95 over the validation sources that have both labels: the recipe for the worst site)
    select_on: str = "worst"
    #: how an epoch's films are drawn, one of :data:`~cxrtriage.train.epoch_sampling.BALANCES`
    balance: str = "source"
    #: NIH films per epoch (None: as many as its train part has)
    nih_per_epoch: int | None = None
    #: also save every epoch's weights under ``epochs/`` (so another selection rule can be applied afterwards)
    keep_epochs: bool = False

    def __post_init__(self) -> None:
        if self.augment is None:
            self.augment = augment_level(self.strong_augment)
        elif self.strong_augment and self.augment == "gen1":
            raise ValueError("strong_augment=True asks for gen2, augment='gen1' for gen1: give one")
        self.strong_augment = augment_level(self.augment) != "gen1"


def limit_per_dataset(records: list[Record], limit: int | None) -> list[Record]:
    """A seeded random sample of at most ``limit`` records of each dataset (order preserved); None keeps all.
    Random, not the first rows: the label tables are sorted by finding, so the first rows are one class."""
    if limit is None:
        return records
    keep: set[str] = set()
    for dataset in sorted({r.dataset for r in records}):
        keys = [r.key for r in records if r.dataset == dataset]
        keep.update(random.Random(0).sample(keys, min(limit, len(keys))))  # noqa: S311 - seeded for a reproducible sample, not a secret
    return [r for r in records if r.key in keep]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cache_config(size: int, window: str | None = None) -> dict:
    """The resize and 8-bit step of the bundled CNN's preprocessing (what the cache holds; the window, when there is
    one, and mean/std come later, after augmentation)."""
    cfg = {"input_size": size, "resize": SQUASH_BILINEAR, "channels": 1, "quantize": QUANTIZE_UINT8}
    return {**cfg, "window": window} if window else cfg


CAM_STRIDE = 16  # the CNN's last feature map is 1/16 of the input (cxrcnet-s16)
MASK_GRID = 64  # resolution at which lung and box masks are cached (then sampled at the CAM's grid)
RSNA_PIXELS = 512.0  # the RSNA boxes are in the pixel space of the shared 512 px NIH PNGs


def attention_masks(records: list[Record], cache: np.ndarray, data_dir: Path) -> np.ndarray:
    """(N, 2, 64, 64) float16: [RSNA lung-opacity boxes (zeros when none), lung fields grown by 5% (the bundled
    segmentation of the cached image)] for the activation-map losses."""
    from cxrtriage.anatomy.components import nearest_resize
    from cxrtriage.anatomy.measure import measure
    from cxrtriage.anatomy.segmenter import Segmenter
    from cxrtriage.data import rsna_boxes

    segmenter, boxes = Segmenter(), rsna_boxes(data_dir)
    out = np.zeros((len(records), 2, MASK_GRID, MASK_GRID), np.float16)
    g = MASK_GRID
    for i, (rec, img) in enumerate(zip(records, cache)):
        for x, y, w, h in boxes.get(rec.image_id, []) if rec.dataset == "nih" else []:
            out[
                i,
                0,
                int(y / RSNA_PIXELS * g) : int(np.ceil((y + h) / RSNA_PIXELS * g)),
                int(x / RSNA_PIXELS * g) : int(np.ceil((x + w) / RSNA_PIXELS * g)),
            ] = 1
        out[i, 1] = nearest_resize(
            measure(segmenter.segment(img.astype(np.float32) / 255.0)).evidence_region(0.05), g, g
        )
    return out


def attention_losses(
    fmap: torch.Tensor, weight: torch.Tensor, masks: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(box loss, lung loss) of the class activation map ``w . F`` against masks sampled at its grid.
    Box: -log of the softmax mass of the map inside the radiologists' boxes (images with a box only). Lung: share
    of the positive map outside the grown lung fields."""
    cam = torch.einsum("nchw,c->nhw", fmap, weight)
    box, lung = masks[:, 0], masks[:, 1]
    has_box = box.flatten(1).amax(1) > 0.5
    if bool(has_box.any()):
        p = torch.softmax(cam[has_box].flatten(1), dim=1)
        box_loss = -torch.log((p * box[has_box].flatten(1)).sum(1) + 1e-6).mean()
    else:
        box_loss = cam.sum() * 0.0
    pos = F.relu(cam)
    lung_loss = ((pos * (1 - lung)).flatten(1).sum(1) / (pos.flatten(1).sum(1) + 1e-6)).mean()
    return box_loss, lung_loss


def apply_window(x: torch.Tensor, window: str | None) -> torch.Tensor:
    """The serving window (:func:`~cxrtriage.imaging.preprocess.percentile_window`) on every image of a batch."""
    if window != PERCENTILE_WINDOW:
        return x
    return torch.from_numpy(np.stack([percentile_window(a[0])[None] for a in x.numpy()]))


def load_cache(records: list[Record], size: int, desc: str) -> np.ndarray:
    """Decode, take the exposed field and resize every image once (uint8, N x S x S) as the pipeline does
    (:func:`~cxrtriage.imaging.exposed_field.analysed_region`, then :func:`~cxrtriage.imaging.preprocess.to_cache`,
    the first half of the serving path); augmentation then runs on tensors. Training, calibration and export all
    read images through here."""
    out = np.empty((len(records), size, size), dtype=np.uint8)
    cfg = cache_config(size)
    for i, rec in enumerate(tqdm(records, desc=f"loading {desc}", unit="img", leave=False, mininterval=5.0)):
        out[i] = to_cache(analysed_region(load_image(rec.path).pixels), cfg)
    return out


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    images: np.ndarray,
    mean: float,
    std: float,
    batch: int = 64,
    window: str | None = None,
    finding: bool = False,
) -> np.ndarray:
    """Urgency logits [N] (``finding``: the first finding head's logits instead) of cached images."""
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        x = apply_window(torch.from_numpy(images[i : i + batch]).float().div_(255).unsqueeze(1), window)
        outs = model(((x - mean) / std).contiguous(memory_format=torch.channels_last))
        out.append((outs[2] if finding else outs[0])[:, 0].numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if len(set(y.tolist())) == 2 else float("nan")


def train(cfg: TrainConfig) -> Path:
    """Run training; writes ``checkpoint.pt`` and ``train_log.json`` into ``cfg.out_dir`` and returns the checkpoint."""
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(cfg.data_dir)
    # pediatric validation images are always scored, so an NIH-only run shows what it does on children
    datasets = ("nih",) + tuple(d for d in ("kermany", "shenzhen") if (data_dir / d / "labels.csv").is_file())
    parts = {k: limit_per_dataset(v, cfg.limit) for k, v in load_split_records(data_dir, datasets).items()}
    use_jsrt = cfg.jsrt_per_epoch > 0 and (data_dir / "jsrt_scr" / "labels.csv").is_file()
    jsrt = {k: limit_per_dataset(v, cfg.limit) for k, v in jsrt_urgency_parts(data_dir).items()} if use_jsrt else {}
    tr_nih = [r for r in parts["train"] if r.dataset == "nih"] if cfg.nih_train else []
    tr_ker = [r for r in parts["train"] if r.dataset == "kermany"] if cfg.kermany_per_epoch > 0 else []
    tr_jsrt = jsrt.get("train", [])
    tr_shz = [r for r in parts["train"] if r.dataset == "shenzhen"] if cfg.shenzhen_per_epoch > 0 else []
    va_shz = [r for r in parts["val"] if r.dataset == "shenzhen"]
    va_nih = [r for r in parts["val"] if r.dataset == "nih"]
    va_ker = [r for r in parts["val"] if r.dataset == "kermany"]
    va_jsrt = jsrt.get("val", [])
    t0 = time.time()
    S = cfg.input_size
    empty = np.zeros((0, S, S), np.uint8)
    cache = {
        "tr_nih": load_cache(tr_nih, S, "NIH train") if tr_nih else empty,
        "tr_ker": load_cache(tr_ker, S, "pediatric train") if tr_ker else empty,
        "tr_jsrt": load_cache(tr_jsrt, S, "JSRT train") if tr_jsrt else empty,
        "tr_shz": load_cache(tr_shz, S, "Shenzhen train") if tr_shz else empty,
        "va_nih": load_cache(va_nih, S, "NIH val"),
        "va_ker": load_cache(va_ker, S, "pediatric val") if va_ker else empty,
        "va_jsrt": load_cache(va_jsrt, S, "JSRT val") if va_jsrt else empty,
        "va_shz": load_cache(va_shz, S, "Shenzhen val") if va_shz else empty,
    }
    y = {
        "tr_nih": np.array([r.urgent for r in tr_nih], np.float32),
        "tr_ker": np.array([r.urgent for r in tr_ker], np.float32),
        "tr_jsrt": np.zeros(len(tr_jsrt), np.float32),
        "va_nih": np.array([r.urgent for r in va_nih], np.int64),
        "va_ker": np.array([r.urgent for r in va_ker], np.int64),
        "tr_shz": np.array([r.urgent for r in tr_shz], np.float32),
        "va_shz": np.array([r.urgent for r in va_shz], np.int64),
    }
    # lung opacity (RSNA radiologists): known for part of NIH only; -1 = unknown, left out of that loss
    rsna = rsna_opacity_labels(data_dir) if cfg.opacity_weight > 0 else {}
    op_tr_nih = np.array([rsna.get(r.key, -1) for r in tr_nih], np.float32)
    op_va_nih = np.array([rsna.get(r.key, -1) for r in va_nih], np.int64)
    use_attention = cfg.box_weight > 0 or cfg.lung_weight > 0
    att = {
        k: attention_masks(recs, cache[k], data_dir)
        if use_attention and len(recs)
        else np.zeros((len(recs), 2, MASK_GRID, MASK_GRID), np.float16)
        for k, recs in (("tr_nih", tr_nih), ("tr_ker", tr_ker), ("tr_jsrt", tr_jsrt), ("tr_shz", tr_shz))
    }
    stats_from = cache["tr_nih"] if len(tr_nih) else cache["tr_ker"]
    windowed = apply_window(torch.from_numpy(stats_from).float().div_(255).unsqueeze(1), cfg.window)
    mean, std = float(windowed.mean()), float(windowed.std())
    preprocess = {**cache_config(S, cfg.window), "mean": mean, "std": std}
    load_s = time.time() - t0

    findings = ("lung_opacity",) if rsna else ()
    arch = {**cfg.arch, "findings": list(findings)}
    model = CXRNet(ArchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in arch.items()}))
    model = model.to(memory_format=torch.channels_last)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_ker = min(cfg.kermany_per_epoch, len(tr_ker))
    n_jsrt = min(cfg.jsrt_per_epoch, len(tr_jsrt))
    n_shz = min(cfg.shenzhen_per_epoch, len(tr_shz))
    n_nih = len(tr_nih) if cfg.nih_per_epoch is None or not len(tr_nih) else cfg.nih_per_epoch
    steps_per_epoch = math.ceil((n_nih + n_ker + n_jsrt + n_shz) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    # at least two warm-up steps: OneCycleLR divides by zero when the warm-up ends on step 0 (tiny smoke runs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=max(0.1, 2.0 / total))
    gen = torch.Generator().manual_seed(cfg.seed)
    level = augment_level(cfg.augment or cfg.strong_augment)
    rng = np.random.default_rng(cfg.seed)

    history = []
    best = {"auc": -1.0, "epoch": -1}
    for epoch in range(cfg.epochs):
        model.train()
        nih_idx = draw_epoch(rng, y["tr_nih"], cfg.nih_per_epoch, cfg.balance)
        ker_idx = draw_epoch(rng, y["tr_ker"], n_ker, cfg.balance)
        jsrt_idx = draw_epoch(rng, y["tr_jsrt"], n_jsrt, cfg.balance)
        shz_idx = draw_epoch(rng, y["tr_shz"], n_shz, cfg.balance)
        picked = (("tr_nih", nih_idx), ("tr_ker", ker_idx), ("tr_jsrt", jsrt_idx), ("tr_shz", shz_idx))
        X = np.concatenate([cache[k][i] for k, i in picked])
        Y = np.concatenate([y[k][i] for k, i in picked])
        OP = np.concatenate([op_tr_nih[nih_idx], -np.ones(len(ker_idx) + len(jsrt_idx) + len(shz_idx), np.float32)])
        M = np.concatenate([att[k][i] for k, i in picked]) if use_attention else None
        order = rng.permutation(len(X))
        losses = []
        bar = tqdm(
            range(0, len(order), cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, mininterval=5.0
        )  # sparse refreshes: a saved notebook keeps each one as a line
        for i in bar:
            idx = order[i : i + cfg.batch_size]
            x = torch.from_numpy(X[idx]).float().div_(255).unsqueeze(1)
            if use_attention:
                masks = torch.from_numpy(M[idx].astype(np.float32))
                x, m = augment(x, gen, level, masks=masks, mask_size=S // CAM_STRIDE)
            else:
                x = augment(x, gen, level)
            x = apply_window(x, cfg.window)
            outs = model(((x - mean) / std).contiguous(memory_format=torch.channels_last))
            loss = F.binary_cross_entropy_with_logits(outs[0][:, 0], torch.from_numpy(Y[idx]))
            if use_attention:
                box_loss, lung_loss = attention_losses(outs[1], model.head.weight[0], m)
                loss = loss + cfg.box_weight * box_loss + cfg.lung_weight * lung_loss
            known = torch.from_numpy(OP[idx] >= 0)
            if findings and bool(known.any()):
                loss = loss + cfg.opacity_weight * F.binary_cross_entropy_with_logits(
                    outs[2][:, 0][known], torch.from_numpy(OP[idx])[known]
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            ema.update_parameters(model)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses):.3f}", refresh=False)
        score = functools.partial(predict_logits, ema.module, mean=mean, std=std, window=cfg.window)
        val = {k: score(cache[k]) for k in ("va_nih", "va_ker", "va_shz") if len(cache[k])}  # each scored once
        auc_nih = _auc(y["va_nih"], val["va_nih"])
        auc_ker = _auc(y["va_ker"], val["va_ker"]) if len(va_ker) else None
        row = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)),
            "val_auc_nih": auc_nih,
            "val_auc_pediatric": auc_ker,
            "elapsed_s": round(time.time() - t0, 1),
        }
        spec95 = {}  # specificity at sensitivity 0.95 per validation source: what a rule-out threshold leaves
        band = {}  # and its mean over sensitivities 0.80-1.00, less at the mercy of one urgent film's score
        for name, key in (("nih", "va_nih"), ("pediatric", "va_ker"), ("shenzhen", "va_shz")):
            if len(set(y[key].tolist())) == 2:
                spec95[name] = float(specificity_at_sensitivity(y[key], val[key], 0.95))
                row[f"val_spec95_{name}"] = spec95[name]
                band[name] = mean_specificity_at_high_sensitivity(y[key], val[key], 0.8)
                row[f"val_spec_band_{name}"] = band[name]
                if name == "shenzhen":
                    row["val_auc_shenzhen"] = _auc(y[key], val[key])
        if len(va_jsrt):  # all negatives: the share above the NIH median logit shows what another site's normals get
            row["val_jsrt_median_logit"] = float(np.median(score(cache["va_jsrt"])))
        if findings and (op_va_nih >= 0).any():
            k = op_va_nih >= 0
            row["val_auc_lung_opacity"] = _auc(op_va_nih[k], score(cache["va_nih"][k], finding=True))
        history.append(row)
        print(json.dumps(row), flush=True)
        trained = {k for k, recs in (("nih", tr_nih), ("pediatric", tr_ker), ("shenzhen", tr_shz)) if recs}
        chosen_on, chosen_name = epoch_figure(cfg.select_on, auc_nih, auc_ker, spec95, trained, band)
        if epoch == 0 or chosen_on > best["auc"]:  # NaN (one-class validation) never beats a real AUC
            best = {"auc": chosen_on, "epoch": epoch + 1, "chosen_on": chosen_name}
            state = {k: v.detach().clone() for k, v in ema.module.state_dict().items()}
        if cfg.keep_epochs:
            (out_dir / "epochs").mkdir(exist_ok=True)
            kept = {"arch": arch, "state_dict": ema.module.state_dict(), "preprocess": preprocess, "best": row}
            torch.save(kept, out_dir / "epochs" / f"{epoch + 1:02d}.pt")

    ckpt = out_dir / "checkpoint.pt"
    torch.save(
        {
            "arch": arch,
            "state_dict": state,
            "preprocess": preprocess,
            "best": best,
        },
        ckpt,
    )
    log = {
        "command": " ".join(["cxrtriage"] + sys.argv[1:])
        if sys.argv and sys.argv[0].endswith("cxrtriage")
        else " ".join(sys.argv),
        "config": {**asdict(cfg), "data_dir": "CXRTRIAGE_DATA_DIR"},  # no path of this machine in the metadata
        "best_epoch": best,
        "history": history,
        "counts": {k: int(len(v)) for k, v in cache.items()},
        "opacity_labels": {"train": int((op_tr_nih >= 0).sum()), "val": int((op_va_nih >= 0).sum())},
        "split_sha256": split_sha256(),
        "shenzhen_split_sha256": split_sha256(SHENZHEN_SPLIT_FILE) if tr_shz or va_shz else None,
        "load_seconds": round(load_s, 1),
        "wall_seconds": round(time.time() - t0, 1),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "threads": cfg.threads,
    }
    (out_dir / "train_log.json").write_text(json.dumps(log, indent=2) + "\n")
    return ckpt
