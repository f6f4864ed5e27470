"""LeNet-5 with the knobs the study varied; every trained zoo model is one instance of this class,
and `Ensemble` averages the probabilities of several of them."""
from __future__ import annotations

import math

import torch
from torch import nn


class LeNet5(nn.Module):
    """LeNet-5 for 1x28x28 inputs.

    conv(c1@k1, pad p1) -> [BN] -> act -> avgpool 2 -> conv(c2@k2) -> [BN] -> act -> avgpool 2
    -> flatten -> fc 120 -> act -> [dropout] -> fc 84 -> act -> [dropout] -> fc num_classes
    """

    def __init__(
        self,
        num_classes: int = 10,
        channels: tuple[int, int] = (6, 16),
        kernel_sizes: tuple[int, int] = (5, 5),
        padding: int = 2,
        batchnorm: bool = False,
        activation: str = "relu",
        dropout: float = 0.0,
        in_size: int = 28,
    ) -> None:
        super().__init__()
        c1, c2 = channels
        k1, k2 = kernel_sizes
        act = {"relu": nn.ReLU, "leakyrelu": nn.LeakyReLU}
        if activation not in act:
            raise ValueError(f"Unknown activation {activation!r}; expected one of {sorted(act)}")
        Act = act[activation]

        def block(cin: int, cout: int, k: int, pad: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=pad)]
            if batchnorm:
                layers.append(nn.BatchNorm2d(cout))
            return layers + [Act(), nn.AvgPool2d(2)]

        self.features = nn.Sequential(*block(1, c1, k1, padding), *block(c1, c2, k2, 0))
        side = ((in_size + 2 * padding - k1 + 1) // 2 - k2 + 1) // 2
        drop = [nn.Dropout(dropout)] if dropout > 0 else []
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * side * side, 120), Act(), *drop,
            nn.Linear(120, 84), Act(), *drop,
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Ensemble(nn.Module):
    """The mean of its members' softmax probabilities, returned as its logarithm.

    The output takes the place of logits: softmax gives back the mean probability exactly (the
    log-probabilities already sum to one) and argmax picks the class the mean ranks first, so
    training's metrics, the ONNX parity check and the service read it like any model's logits.
    """

    def __init__(self, members: dict[str, nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.names = list(members)
        self.members = nn.ModuleList(members.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # log(mean(softmax)) as logsumexp of log-softmax: no underflow for confident members.
        log_probs = torch.stack([m(x).log_softmax(dim=1) for m in self.members])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))


def macs_per_image(model) -> int:
    """Multiply-accumulates of one forward pass on one 1x28x28 image (conv and linear layers)."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            total += out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, nn.Linear):
            total += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, 1, 28, 28))
    finally:
        for h in handles:
            h.remove()
    return total
