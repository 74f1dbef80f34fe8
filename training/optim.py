"""SGD and Adam for local training, without ``torch.optim``.

``torch.optim``'s optimizers import ``torch._dynamo`` (and with it sympy, about 800
modules) on their first ``step`` or ``add_param_group``, whether or not anything is
compiled: about 70 MB of resident memory and seconds of import time in every trainer,
for nothing it uses. These are the same updates as torch's single-tensor CPU
implementations (``torch.optim.sgd._single_tensor_sgd``, ``adam._single_tensor_adam``
with torch's defaults: no dampening, nesterov, amsgrad or maximize), operation for
operation, so the weights come out bit-identical (``tests/training/test_optim.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class SGD:
    """SGD with momentum and L2 weight decay (torch's ``SGD`` with its defaults otherwise)."""

    def __init__(
        self, params: Sequence[torch.Tensor], lr: float, momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        self.params, self.lr = list(params), lr
        self.momentum, self.weight_decay = momentum, weight_decay
        self._buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        """Drop every gradient (``set_to_none``)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update from the gradients; parameters without one are left alone."""
        for i, p in enumerate(self.params):
            grad = p.grad
            if grad is None:
                continue
            if self.weight_decay:
                grad = grad.add(p, alpha=self.weight_decay)
            if self.momentum:
                buf = self._buffers[i]
                if buf is None:
                    buf = self._buffers[i] = grad.detach().clone()
                else:
                    buf.mul_(self.momentum).add_(grad)
                grad = buf
            p.add_(grad, alpha=-self.lr)


class Adam:
    """Adam with L2 weight decay (torch's ``Adam``: betas 0.9, 0.999, eps 1e-8)."""

    def __init__(
        self, params: Sequence[torch.Tensor], lr: float, weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
    ) -> None:
        self.params, self.lr, self.weight_decay = list(params), lr, weight_decay
        self.betas, self.eps = betas, eps
        self._moments: list[tuple[torch.Tensor, torch.Tensor, list[int]] | None] = [
            None
        ] * len(self.params)

    def zero_grad(self) -> None:
        """Drop every gradient (``set_to_none``)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update from the gradients; parameters without one are left alone."""
        beta1, beta2 = self.betas
        for i, p in enumerate(self.params):
            grad = p.grad
            if grad is None:
                continue
            moments = self._moments[i]
            if moments is None:
                zeros = torch.zeros_like(p, memory_format=torch.preserve_format)
                moments = self._moments[i] = (zeros, zeros.clone(), [0])
            exp_avg, exp_avg_sq, steps = moments
            steps[0] += 1
            if self.weight_decay:
                grad = grad.add(p, alpha=self.weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = float(steps[0])
            step_size = self.lr / (1 - beta1**step)
            denom = (exp_avg_sq.sqrt() / (1 - beta2**step) ** 0.5).add_(self.eps)
            p.addcdiv_(exp_avg, denom, value=-step_size)
