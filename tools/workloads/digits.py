"""digits-mlp and digits-cnn: real torch training on scikit-learn's bundled digits (offline)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from asap.tools.workloads.common import check_finite, device, make_optimizer

Report = Callable[[int, float], bool]


def _data(dev: torch.device, images: bool):
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    xtr, xva, ytr, yva = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    shape = (-1, 1, 8, 8) if images else (-1, 64)
    as_x = lambda a: torch.tensor(a, dtype=torch.float32, device=dev).reshape(shape)  # noqa: E731
    as_y = lambda a: torch.tensor(a, dtype=torch.long, device=dev)  # noqa: E731
    return as_x(xtr), as_y(ytr), as_x(xva), as_y(yva)


def _mlp(config: dict) -> nn.Module:
    layers, width, d_in = [], config["width"], 64
    for _ in range(config["depth"]):
        layers += [nn.Linear(d_in, width), nn.ReLU(), nn.Dropout(config["dropout"])]
        d_in = width
    return nn.Sequential(*layers, nn.Linear(d_in, 10))


def _cnn(config: dict) -> nn.Module:
    c, k = config["channels"], config["kernel"]
    return nn.Sequential(
        nn.Conv2d(1, c, k, padding=k // 2), nn.ReLU(),
        nn.Conv2d(c, 2 * c, k, padding=k // 2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(config["dropout"]),
        nn.Linear(2 * c * 16, config["hidden"]), nn.ReLU(), nn.Linear(config["hidden"], 10),
    )


def _train(model: nn.Module, config: dict, report: Report, epochs: int, images: bool) -> dict:
    torch.manual_seed(0)
    dev = device()
    xtr, ytr, xva, yva = _data(dev, images)
    model = model.to(dev)
    opt = make_optimizer(model.parameters(), config)
    loss_fn = nn.CrossEntropyLoss()
    acc, loss = 0.0, float("nan")
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(xtr), device=dev)
        for i in range(0, len(xtr), config["batch_size"]):
            idx = perm[i:i + config["batch_size"]]
            opt.zero_grad()
            out = loss_fn(model(xtr[idx]), ytr[idx])
            out.backward()
            opt.step()
        loss = out.item()
        check_finite(loss, epoch)
        model.eval()
        with torch.no_grad():
            acc = (model(xva).argmax(1) == yva).float().mean().item()
        if report(epoch, acc):
            break
    return {"val_accuracy": acc, "train_loss": loss}


def digits_mlp(config: dict, report: Report, fidelity: int = 20) -> dict:
    return _train(_mlp(config), config, report, fidelity, images=False)


def digits_cnn(config: dict, report: Report, fidelity: int = 15) -> dict:
    return _train(_cnn(config), config, report, fidelity, images=True)
