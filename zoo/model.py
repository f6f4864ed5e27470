"""LeNet-5 with the knobs the study varied; every trained zoo model is one instance of this class,
and `Ensemble` averages the probabilities of several of them."""
from __future__ import annotations

import math

import torch
from torch import nn


class LeNet5(nn.Module):
    """LeNet-5 for CxHxW inputs (the study's: 1x28x28).

    conv(c1@k1, pad p1) -> [BN] -> act -> avgpool 2 -> conv(c2@k2) -> [BN] -> act -> avgpool 2
    [-> conv(c3@k3, pad k3//2) -> [BN] -> act -> avgpool 2, when three channels are given]
    -> flatten -> fc 120 -> act -> [dropout] -> fc 84 -> act -> [dropout] -> fc num_classes
    """

    def __init__(
        self,
        num_classes: int = 10,
        channels: tuple[int, ...] = (6, 16),
        kernel_sizes: tuple[int, ...] = (5, 5),
        padding: int = 2,
        batchnorm: bool = False,
        activation: str = "relu",
        dropout: float = 0.0,
        in_size: int | tuple[int, int] = 28,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        if len(channels) not in (2, 3) or len(kernel_sizes) != len(channels):
            raise ValueError(f"channels and kernel_sizes must both have 2 or 3 entries, got {channels} and {kernel_sizes}")
        act = {"relu": nn.ReLU, "leakyrelu": nn.LeakyReLU}
        if activation not in act:
            raise ValueError(f"Unknown activation {activation!r}; expected one of {sorted(act)}")
        Act = act[activation]
        height, width = (in_size, in_size) if isinstance(in_size, int) else in_size
        self.input_shape = (in_channels, height, width)

        layers: list[nn.Module] = []
        cin = in_channels
        for i, (cout, k) in enumerate(zip(channels, kernel_sizes)):
            pad = padding if i == 0 else 0 if i == 1 else k // 2
            layers.append(nn.Conv2d(cin, cout, k, padding=pad))
            if batchnorm:
                layers.append(nn.BatchNorm2d(cout))
            layers += [Act(), nn.AvgPool2d(2)]
            height, width = (height + 2 * pad - k + 1) // 2, (width + 2 * pad - k + 1) // 2
            cin = cout
        self.features = nn.Sequential(*layers)
        drop = [nn.Dropout(dropout)] if dropout > 0 else []
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(cin * height * width, 120), Act(), *drop,
            nn.Linear(120, 84), Act(), *drop,
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Ensemble(nn.Module):
    """The mean of its members' softmax probabilities, returned as its logarithm: it takes the place
    of logits (softmax gives back the mean probability exactly, argmax the class it ranks first), so
    training's metrics, the ONNX parity check and the service read it like any model's logits."""

    def __init__(self, members: dict[str, nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.names = list(members)
        self.members = nn.ModuleList(members.values())
        shapes = {m.input_shape for m in self.members}
        if len(shapes) != 1:
            raise ValueError(f"an ensemble's members must take one input shape, got {sorted(shapes)}")
        self.input_shape = shapes.pop()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return log_mean_probability([m(x).log_softmax(dim=1) for m in self.members])


def log_mean_probability(log_probs: list[torch.Tensor]) -> torch.Tensor:
    """log of the mean probability of several models' log-softmax outputs (the ensemble's output);
    logsumexp of log-softmax: no underflow for confident members."""
    return torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(log_probs))


def macs_per_image(model) -> int:
    """Multiply-accumulates of one forward pass on one image, in the conv and linear layers (what
    torch's FlopCounterMode counts, halved; importing it loads torch._dynamo, 2 s of every command)."""
    macs = []

    def count(layer: nn.Module, _, out: torch.Tensor) -> None:  # per output: one per input it sums
        macs.append(out.numel() * (layer.in_features if isinstance(layer, nn.Linear) else
                                   layer.in_channels // layer.groups * math.prod(layer.kernel_size)))

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.inference_mode():
        model.eval()(torch.zeros(1, *model.input_shape))
    for hook in hooks:
        hook.remove()
    return sum(macs)
