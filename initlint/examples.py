"""Model builders shared by the rules' examples (needs torch when called, not when imported).

A rule's ``must_flag`` / ``must_not_flag`` examples are small models; the ones several rules use
live here, so that rule modules import plain model builders and never the test helpers of
``initlint.testing`` (which export ONNX and run the probe).
"""

from __future__ import annotations


def plain_mlp(depth: int, activation="ReLU", init=None, width: int = 64, bias: float | None = None):
    """The plain stack most rule examples use: Linear(16, width), activation, then depth - 2 hidden
    Linear + activation, then Linear(width, 4). ``init`` is applied to every weight in order;
    ``bias`` fills every bias but the head's. ``activation`` is an nn class or its name."""
    import torch.nn as nn

    act = getattr(nn, activation) if isinstance(activation, str) else activation
    layers = [nn.Linear(16, width), act()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), act()]
    layers.append(nn.Linear(width, 4))
    model = nn.Sequential(*layers)
    for layer in model:
        if isinstance(layer, nn.Linear):
            if init is not None:
                init(layer.weight)
            if bias is not None and layer is not model[-1]:
                nn.init.constant_(layer.bias, bias)
    return model
