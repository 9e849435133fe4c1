"""The bundled urgency CNN: a small ResNet-style network in plain torch.

The urgency head sits on globally average-pooled features, so the class activation map is simply the head's
weight vector applied to every cell of the last feature map (stride 16: a 16x16 map for 256 px input).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ArchConfig:
    name: str = "cxrnet-s16"
    in_channels: int = 1
    stem: tuple[int, int] = (24, 48)
    widths: tuple[int, ...] = (48, 96, 192, 256)
    strides: tuple[int, ...] = (1, 2, 2, 1)
    dilations: tuple[int, ...] = (1, 1, 1, 2)
    dropout: float = 0.2
    #: extra finding outputs (generation 2: ("lung_opacity",)), one logit each, on the same pooled features
    findings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_bn(cin: int, cout: int, stride: int = 1, dilation: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride, dilation)
        self.conv2 = _conv_bn(cout, cout, 1, dilation, relu=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class CXRNet(nn.Module):
    """Returns (urgency logit [N, 1], last feature map [N, C, h, w]), plus finding logits [N, F] when the
    configuration names findings."""

    def __init__(self, cfg: ArchConfig = ArchConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        s0, s1 = cfg.stem
        self.stem = nn.Sequential(_conv_bn(cfg.in_channels, s0, stride=2), _conv_bn(s0, s1, stride=2))
        blocks = []
        cin = s1
        for width, stride, dilation in zip(cfg.widths, cfg.strides, cfg.dilations):
            blocks.append(BasicBlock(cin, width, stride, dilation))
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cin, 1)
        self.finding_head = nn.Linear(cin, len(cfg.findings)) if cfg.findings else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def feature_channels(self) -> int:
        return self.cfg.widths[-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        fmap = self.blocks(self.stem(x))
        pooled = self.dropout(fmap.mean(dim=(2, 3)))
        if self.finding_head is None:
            return self.head(pooled), fmap
        return self.head(pooled), fmap, self.finding_head(pooled)
