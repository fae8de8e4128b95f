"""The paper's two small networks (supplementary A), with the input size adapted to the data.

- ``fc``:  input-300-100-classes, ReLU after each hidden layer (784-300-100-10 on MNIST,
  64-300-100-10 on digits); optional dropout after each hidden ReLU.
- ``cnn``: conv3x3 (padding 1) 16, maxpool 2x2, 32, maxpool, 64, maxpool, 128; ReLU then
  optional channel-wise dropout after each conv; global average pooling; 1x1 conv to logits.
  The input-size adaptation: a pooling that would shrink the map below 2x2 is left out. On
  28x28 MNIST nothing changes (28 → 14 → 7 → 3); on 8x8 digits the third pooling goes
  (8 → 4 → 2 → 2), because a 3x3 conv on a 1x1 map only ever uses its centre tap: 8/9 of the
  largest layer's weights (two thirds of the network) would get zero gradients forever.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MODELS", "build_model"]

MODELS = ("fc", "cnn")


def _fc(image_shape: tuple[int, int, int], classes: int, dropout: float) -> nn.Module:
    inputs = image_shape[0] * image_shape[1] * image_shape[2]
    layers: list[nn.Module] = [nn.Flatten()]
    for width_in, width_out in ((inputs, 300), (300, 100)):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(100, classes))
    return nn.Sequential(*layers)


def _cnn(image_shape: tuple[int, int, int], classes: int, dropout: float) -> nn.Module:
    channels = (image_shape[0], 16, 32, 64, 128)
    layers: list[nn.Module] = []
    side = min(image_shape[1:])
    for index, (width_in, width_out) in enumerate(zip(channels[:-1], channels[1:])):
        if index > 0 and side // 2 >= 2:
            layers.append(nn.MaxPool2d(2))
            side //= 2
        layers += [nn.Conv2d(width_in, width_out, 3, padding=1), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(128, classes, 1), nn.Flatten()]
    return nn.Sequential(*layers)


def build_model(
    name: str, image_shape: tuple[int, int, int], classes: int, *, dropout: float = 0.0, seed: int
) -> nn.Module:
    """A freshly initialised network; the same ``seed`` gives the same initial weights."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {name!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if name == "cnn" and min(image_shape[1:]) < 8:
        raise ValueError(f"the CNN needs images of at least 8x8, got {image_shape}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return (_fc if name == "fc" else _cnn)(image_shape, classes, dropout)
