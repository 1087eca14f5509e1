"""The per-parameter optimizers every runner uses: Adam, AdamW and plain SGD.

Why not ``torch.optim``: constructing any ``torch.optim.Optimizer`` imports ``torch._dynamo``
(and with it ``torch.distributed``), about 2 s of CPU per fresh process on an idle core and
10-15 s on a loaded 2-core machine, the same again as importing torch itself. A federation starts
many fresh processes (the Ray actors of a simulation, each deployment party, each notebook
kernel or CLI run), so that import was a large share of a small run. The update rules here are
``torch.optim``'s single-tensor ("for-loop") implementations with ``foreach=False``, operation
for operation, so the numbers are identical: tests/test_models.py compares them bit for bit
against ``torch.optim.Adam``, ``AdamW`` and ``SGD`` over many steps, weight decay and a
``state_dict`` round trip included.

Only what fedads uses is supported: no momentum, no AMSGrad, no closures, one parameter group.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class Optimizer:
    """``rule`` (``"adam"``, ``"adamw"`` or ``"sgd"``) over ``params``, one step per call.

    The interface is the subset of ``torch.optim.Optimizer`` fedads uses: :meth:`zero_grad`,
    :meth:`step`, :meth:`state_dict` and :meth:`load_state_dict`, the latter two in
    ``torch.optim``'s format (``{"state": {index: {"step", "exp_avg", "exp_avg_sq"}},
    "param_groups": [...]}``; ``step`` a float32 scalar tensor), so checkpoints are unchanged.
    """

    def __init__(
        self, params: Iterable[nn.Parameter], rule: str, lr: float, weight_decay: float = 0.0
    ) -> None:
        self.params = list(params)
        self.rule = rule
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.state: dict[int, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's ``.grad`` (``None`` by default, as torch does)."""
        for param in self.params:
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                param.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for index, param in enumerate(self.params):
            if param.grad is not None:
                if self.rule == "sgd":
                    self._sgd(param)
                else:
                    self._adam(index, param)

    def _sgd(self, param: torch.Tensor) -> None:
        grad = param.grad
        assert grad is not None
        if self.weight_decay != 0:
            grad = grad.add(param, alpha=self.weight_decay)
        param.add_(grad, alpha=-self.lr)

    def _adam(self, index: int, param: torch.Tensor) -> None:
        grad = param.grad
        assert grad is not None
        beta1, beta2 = ADAM_BETAS
        slots = self.state.get(index)
        if slots is None:  # lazily, as torch does: only parameters that received a gradient
            slots = self.state[index] = {
                "step": torch.zeros((), dtype=torch.get_default_dtype()),
                "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
            }
        exp_avg, exp_avg_sq, step_t = slots["exp_avg"], slots["exp_avg_sq"], slots["step"]
        step_t += 1
        if self.weight_decay != 0:
            if self.rule == "adamw":  # decoupled weight decay
                param.mul_(1 - self.lr * self.weight_decay)
            else:
                grad = grad.add(param, alpha=self.weight_decay)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = step_t.item()
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = self.lr / bias_correction1
        denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(ADAM_EPS)
        param.addcdiv_(exp_avg, denom, value=-step_size)

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: slots}, "param_groups": [group]}`` (tensors are not copied)."""
        group: dict[str, Any] = {
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "params": list(range(len(self.params))),
        }
        if self.rule != "sgd":
            group.update(betas=ADAM_BETAS, eps=ADAM_EPS)
        return {"state": dict(self.state), "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; moment slots take their parameter's dtype."""
        state: dict[int, dict[str, torch.Tensor]] = {}
        for index, slots in state_dict["state"].items():
            param = self.params[int(index)]
            state[int(index)] = {
                name: (
                    value.detach().clone().to(torch.get_default_dtype()).reshape(())
                    if name == "step"
                    else value.detach().clone().to(dtype=param.dtype, device=param.device)
                )
                for name, value in slots.items()
            }
        self.state = state
