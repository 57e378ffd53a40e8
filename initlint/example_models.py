"""Small models that several rules' examples share (torch is imported inside each builder).

Kept apart from initlint.testing, which runs the probe: a rule may import these, never the probe.
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


# --- zero-initialized models the examples of IL101 (static) and IL404 (probe) share ----------


def zero_linear_before_relu():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    nn.init.zeros_(model[2].weight)
    nn.init.zeros_(model[2].bias)
    return model


def two_consecutive_zero_layers():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))
    for layer in (model[2], model[4]):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    return model


def _lora_model(zero_a: bool):
    import torch.nn as nn

    class LoRALinear(nn.Module):
        def __init__(self, features: int, rank: int = 4):
            super().__init__()
            self.base = nn.Linear(features, features)
            self.lora_A = nn.Linear(features, rank, bias=False)
            self.lora_B = nn.Linear(rank, features, bias=False)
            nn.init.kaiming_uniform_(self.lora_A.weight, a=5**0.5)
            nn.init.zeros_(self.lora_B.weight)
            if zero_a:
                nn.init.zeros_(self.lora_A.weight)

        def forward(self, x):
            return self.base(x) + self.lora_B(self.lora_A(x)) * 2.0

    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), LoRALinear(32), nn.ReLU(), nn.Linear(32, 4))


def lora_with_a_and_b_zero():
    return _lora_model(zero_a=True)


def lora_b_zero_a_random():
    return _lora_model(zero_a=False)


def zero_last_conv_of_residual_branch():
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, channels: int):
            super().__init__()
            self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
            nn.init.zeros_(self.conv2.weight)  # Fixup: the branch starts as the identity
            nn.init.zeros_(self.conv2.bias)

        def forward(self, x):
            return self.relu(x + self.conv2(self.relu(self.conv1(x))))

    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), Block(8), Block(8), nn.Flatten(), nn.Linear(8 * 8 * 8, 4))


def zero_classifier_head():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    nn.init.zeros_(model[4].weight)
    nn.init.zeros_(model[4].bias)
    return model


def rezero_gate():
    import torch
    import torch.nn as nn

    class ReZeroBlock(nn.Module):
        def __init__(self, features: int):
            super().__init__()
            self.fc = nn.Linear(features, features)
            self.alpha = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return x + self.alpha * torch.relu(self.fc(x))

    return nn.Sequential(nn.Linear(16, 32), ReZeroBlock(32), ReZeroBlock(32), nn.Linear(32, 4))


def batchnorm_residual_block(channels: int):
    """torchvision's BasicBlock in small: conv, BatchNorm, ReLU, conv, BatchNorm, added to its
    input, then ReLU."""
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(channels)
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(channels)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(x + self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))

    return Block()
