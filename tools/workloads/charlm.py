"""charlm: a tiny character-level transformer on text that ships with Python itself.

The corpus is the docstrings of a fixed list of standard-library modules: offline, a few hundred
kB, identical on every machine with the same Python. Validation loss (nats/char) is minimized.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from functools import lru_cache

import torch
from torch import nn

from asap.tools.workloads.common import check_finite, device

_MODULES = ("argparse", "collections", "functools", "itertools", "json", "os", "pathlib", "re",
            "string", "textwrap", "typing", "unittest", "logging", "subprocess", "threading")
CONTEXT, BATCH, EVAL_EVERY = 64, 32, 50


@lru_cache(maxsize=1)
def corpus() -> str:
    parts = []
    for name in _MODULES:
        mod = importlib.import_module(name)
        parts.append(mod.__doc__ or "")
        parts += [getattr(mod, a).__doc__ for a in sorted(dir(mod))
                  if not a.startswith("_") and callable(getattr(mod, a))]
    return "\n".join(p for p in parts if isinstance(p, str) and p)


class CharLM(nn.Module):
    def __init__(self, vocab: int, width: int, layers: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.zeros(CONTEXT, width))
        block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(CONTEXT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.pos[: x.shape[1]]
        return self.head(self.blocks(h, mask=self.mask[: x.shape[1], : x.shape[1]], is_causal=True))


def charlm(config: dict, report: Callable[[int, float], bool], fidelity: int = 600) -> dict:
    """Train for ``fidelity`` steps; report validation loss every 50 steps."""
    torch.manual_seed(0)
    dev = device()
    text = corpus()
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    split = int(0.9 * len(data))
    train, val = data[:split], data[split:]
    gen = torch.Generator().manual_seed(0)
    val_idx = torch.randint(len(val) - CONTEXT - 1, (256,), generator=gen)
    vx = torch.stack([val[i:i + CONTEXT] for i in val_idx]).to(dev)
    vy = torch.stack([val[i + 1:i + CONTEXT + 1] for i in val_idx]).to(dev)

    model = CharLM(len(chars), config["width"], config["layers"], config["heads"],
                   config["dropout"]).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=0.01)
    warmup = max(config["warmup"], 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    loss_fn = nn.CrossEntropyLoss()
    val_loss = math.inf
    for step in range(1, fidelity + 1):
        model.train()
        idx = torch.randint(len(train) - CONTEXT - 1, (BATCH,), generator=gen)
        x = torch.stack([train[i:i + CONTEXT] for i in idx]).to(dev)
        y = torch.stack([train[i + 1:i + CONTEXT + 1] for i in idx]).to(dev)
        loss = loss_fn(model(x).reshape(-1, len(chars)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % EVAL_EVERY == 0 or step == fidelity:
            check_finite(loss.item(), step)
            model.eval()
            with torch.no_grad():
                val_loss = loss_fn(model(vx).reshape(-1, len(chars)), vy.reshape(-1)).item()
            check_finite(val_loss, step)
            if report(step, val_loss):
                break
    return {"val_loss": val_loss}
