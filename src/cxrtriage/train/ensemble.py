"""A seed ensemble of the bundled CNN as ONE network, so that ``cxrtriage export`` ships it as one ONNX graph and the
engine serves it unchanged.

Why one graph and concatenated feature maps: the engine computes the class activation map as ``head.weight .
feature_map`` and trusts that its mean plus the bias is the logit. With the members' maps concatenated along the
channels and the equivalent head ``weight = concat(w_k) / K``, ``bias = mean(b_k)``, that map is exactly the mean of
the members' maps, and its mean plus the bias is the mean of their logits, which is what the graph outputs. The
embedding (the map's global mean) becomes the concatenation of the members' embeddings; the export rebuilds the
similar-case index and the out-of-distribution statistics from it. One member is exported bare, exactly as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import torch
from torch import nn

from cxrtriage.train.model import ArchConfig, CXRNet

COMBINE_RULE = (
    "mean of logits; feature maps concatenated, head weights /K; each member's own input mean/std restored in the graph"
)
#: preprocessing keys that must agree between members (one input feeds every member). The input mean and std may
#: differ (each run measures them on its own training sample): the graph maps the first member's normalisation to
#: each member's own, exactly
PREPROCESS_KEYS = ("input_size", "window", "resize", "channels", "quantize")


class MemberMismatch(ValueError):
    """Members that cannot form one ensemble (another architecture or preprocessing); the sentence names which."""


class SeedEnsemble(nn.Module):
    """Members of one architecture run on the same input: (mean logit [N,1], concatenated feature maps
    [N, K*C, h, w]) plus the mean finding logits [N, F] when the members have finding heads."""

    def __init__(self, members: Sequence[CXRNet], norms: Sequence[tuple[float, float]] | None = None) -> None:
        """``norms``: each member's (mean, std) input normalisation; the graph's input is normalised with the first
        member's, and member k sees ``(x * std_1 + mean_1 - mean_k) / std_k``: the image it was trained on."""
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0].cfg
        for i, m in enumerate(members[1:], start=2):
            if m.cfg != first:
                raise MemberMismatch(f"ensemble member {i} has another architecture than member 1 ({m.cfg} vs {first})")
        self.cfg: ArchConfig = first
        self.members = nn.ModuleList(members)
        norms = list(norms) if norms is not None else [(0.0, 1.0)] * len(members)
        if len(norms) != len(members):
            raise ValueError(f"{len(norms)} normalisations for {len(members)} members")
        m1, s1 = norms[0]
        #: per member: input * scale + shift turns the first member's normalised input into its own
        self.scales = [s1 / s for _, s in norms]
        self.shifts = [(m1 - m) / s for m, s in norms]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = [
            m(x if (a, b) == (1.0, 0.0) else x * a + b)
            for m, a, b in zip(self.members, self.scales, self.shifts, strict=True)
        ]
        logit = torch.stack([o[0] for o in outs]).mean(dim=0)
        fmap = torch.cat([o[1] for o in outs], dim=1)
        if self.cfg.findings:
            return logit, fmap, torch.stack([o[2] for o in outs]).mean(dim=0)
        return logit, fmap

    @property
    def head(self) -> nn.Linear:
        """The linear head on the concatenated pooled features that gives the mean logit (the CAM head of
        ``model.json``); built on each call, never part of the exported graph."""
        heads = [cast(CXRNet, m).head for m in self.members]
        weight = torch.cat([h.weight.detach() for h in heads], dim=1) / len(heads)
        bias = torch.stack([h.bias.detach() for h in heads]).mean(dim=0)
        head = nn.Linear(weight.shape[1], 1)
        with torch.no_grad():
            head.weight.copy_(weight)
            head.bias.copy_(bias)
        return head


def check_preprocessing(preprocess: Sequence[dict], names: Sequence[str]) -> None:
    """Raise :class:`MemberMismatch` naming the member and the key when a member's preprocessing differs from the
    first's: the ensemble has one input, so every member must have been trained on the same normalised images."""
    first = preprocess[0]
    for name, pre in zip(names[1:], preprocess[1:]):
        for key in PREPROCESS_KEYS:
            a, b = first.get(key), pre.get(key)
            same = math.isclose(a, b, rel_tol=1e-6) if isinstance(a, float) and isinstance(b, float) else a == b
            if not same:
                raise MemberMismatch(
                    f"ensemble member {name} has preprocess {key}={b!r}, but {names[0]} has {a!r}: "
                    "the members must share architecture and preprocessing"
                )


def combine(members: Sequence[CXRNet], preprocess: Sequence[dict], names: Sequence[str]) -> CXRNet | SeedEnsemble:
    """One member as it is (the single-model export, unchanged), several as a :class:`SeedEnsemble`."""
    check_preprocessing(preprocess, names)
    if len(members) == 1:
        return members[0]
    model = SeedEnsemble(members, [(float(p["mean"]), float(p["std"])) for p in preprocess])
    model.eval()
    return model


def member_record(ckpt: dict, log: dict) -> dict:
    """What ``model.json`` records of one member: its best epoch, seed and training command."""
    return {
        "best_epoch": ckpt.get("best"),
        "seed": (log.get("config") or {}).get("seed"),
        "command": log.get("command"),
    }


def ensemble_block(ckpts: Sequence[dict], logs: Sequence[dict]) -> dict:
    """``model.json``'s ``ensemble`` block (written only when there are several members)."""
    return {
        "members": len(ckpts),
        "checkpoints": [member_record(c, log) for c, log in zip(ckpts, logs)],
        "combine": COMBINE_RULE,
    }


def as_paths(checkpoints: Path | Sequence[Path]) -> list[Path]:
    """One checkpoint or several, as a non-empty list of paths."""
    paths = [Path(checkpoints)] if isinstance(checkpoints, (str, Path)) else [Path(p) for p in checkpoints]
    if not paths:
        raise ValueError("no checkpoint given")
    return paths
