"""Optimizers for the NumPy model (the assignment's bonus), with torch.optim's exact update rules.

Each optimizer keeps its per-parameter state (momentum buffer, Adam's moments, the step count) across
batches — the assignment warns that re-creating it every batch silently turns momentum and Adam into
something else. `step(params, grads)` updates the arrays in place; `state_dict()` / `load_state_dict()`
hold only NumPy arrays (under "tensors", keyed "<slot>.<parameter name>") and JSON scalars (everything
else), so a checkpoint can store them in safetensors plus JSON metadata.

    opt = make_optimizer("adam", lr=2e-3)
    clip_grad_norm(grads, 5.0)
    opt.step(model.params, grads)
"""

from __future__ import annotations

import math

import numpy as np


class Optimizer:
    """Common state handling; subclasses define `slots` (per-parameter arrays) and `_update`."""

    name = "base"
    slots: tuple[str, ...] = ()

    def __init__(self, lr: float, weight_decay: float = 0.0):
        if lr < 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        self.lr = lr  # mutable: schedules and plateau decay change it between steps
        self.weight_decay = weight_decay
        self.steps = 0
        self.state: dict[str, dict[str, np.ndarray]] = {slot: {} for slot in self.slots}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """One update of every parameter that has a gradient, in place."""
        self.steps += 1
        for name, grad in grads.items():
            self._update(name, params[name], grad)

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        raise NotImplementedError

    def _slot(self, slot: str, name: str, like: np.ndarray) -> np.ndarray:
        buf = self.state[slot].get(name)
        if buf is None:
            buf = self.state[slot][name] = np.zeros_like(like)
        return buf

    def hyper(self) -> dict:
        return {"lr": self.lr, "weight_decay": self.weight_decay}

    def state_dict(self) -> dict:
        tensors = {f"{slot}.{name}": arr for slot, bufs in self.state.items() for name, arr in bufs.items()}
        return {"name": self.name, "hyper": self.hyper(), "steps": self.steps, "tensors": tensors}

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"optimizer state is for {state.get('name')!r}, not {self.name!r}")
        for key, value in state["hyper"].items():
            setattr(self, key, tuple(value) if isinstance(value, list) else value)
        self.steps = int(state["steps"])
        self.state = {slot: {} for slot in self.slots}
        for key, arr in state["tensors"].items():
            slot, name = key.split(".", 1)
            self.state[slot][name] = np.array(arr, copy=True)


class SGD(Optimizer):
    """p -= lr · g (plain gradient descent; weight decay adds wd · p to g, as torch.optim.SGD does)."""

    name = "sgd"

    def _update(self, name, param, grad):
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        param -= self.lr * grad


class Momentum(Optimizer):
    """torch.optim.SGD with momentum: v = μ v + g (v = g at the first step); p -= lr · v.

    Nesterov: p -= lr · (g + μ v), the gradient looked at "after" the momentum step.
    """

    name = "momentum"
    slots = ("momentum_buffer",)

    def __init__(self, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(lr, weight_decay)
        self.momentum = momentum
        self.nesterov = nesterov
        if nesterov:
            self.name = "nesterov"

    def hyper(self):
        return {**super().hyper(), "momentum": self.momentum, "nesterov": self.nesterov}

    def _update(self, name, param, grad):
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        buf = self.state["momentum_buffer"].get(name)
        if buf is None:
            buf = self.state["momentum_buffer"][name] = np.array(grad, copy=True)
        else:
            buf *= self.momentum
            buf += grad
        param -= self.lr * (grad + self.momentum * buf if self.nesterov else buf)


class Adam(Optimizer):
    """Adam (Kingma & Ba): moments m, v with bias correction; AdamW decays the weights apart from g.

    m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²;  p -= lr/(1-β1^t) · m / (√v / √(1-β2^t) + ε).
    """

    name = "adam"
    slots = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ):
        super().__init__(lr, weight_decay)
        self.betas = tuple(betas)
        self.eps = eps
        self.decoupled = decoupled
        if decoupled:
            self.name = "adamw"

    def hyper(self):
        return {**super().hyper(), "betas": list(self.betas), "eps": self.eps, "decoupled": self.decoupled}

    def _update(self, name, param, grad):
        beta1, beta2 = self.betas
        if self.weight_decay:
            if self.decoupled:
                param *= 1.0 - self.lr * self.weight_decay
            else:
                grad = grad + self.weight_decay * param
        m = self._slot("exp_avg", name, param)
        v = self._slot("exp_avg_sq", name, param)
        m *= beta1
        m += (1.0 - beta1) * grad
        v *= beta2
        v += (1.0 - beta2) * grad * grad
        step_size = self.lr / (1.0 - beta1**self.steps)
        denom = np.sqrt(v) / math.sqrt(1.0 - beta2**self.steps) + self.eps
        param -= step_size * m / denom


class Adagrad(Optimizer):
    """Adagrad: a coordinate's step shrinks with its summed squared gradients. s += g²; p -= lr g/(√s + ε)."""

    name = "adagrad"
    slots = ("sum",)

    def __init__(self, lr: float = 0.01, weight_decay: float = 0.0, eps: float = 1e-10):
        super().__init__(lr, weight_decay)
        self.eps = eps

    def hyper(self):
        return {**super().hyper(), "eps": self.eps}

    def _update(self, name, param, grad):
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        total = self._slot("sum", name, param)
        total += grad * grad
        param -= self.lr * grad / (np.sqrt(total) + self.eps)


class Adadelta(Optimizer):
    """Adadelta: the step is √(E[Δ²] + ε) / √(E[g²] + ε) · g, both averages decaying with ρ; p -= lr · Δ."""

    name = "adadelta"
    slots = ("square_avg", "acc_delta")

    def __init__(self, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        self.rho = rho
        self.eps = eps

    def hyper(self):
        return {**super().hyper(), "rho": self.rho, "eps": self.eps}

    def _update(self, name, param, grad):
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        square_avg = self._slot("square_avg", name, param)
        acc_delta = self._slot("acc_delta", name, param)
        square_avg *= self.rho
        square_avg += (1.0 - self.rho) * grad * grad
        delta = np.sqrt(acc_delta + self.eps) / np.sqrt(square_avg + self.eps) * grad
        acc_delta *= self.rho
        acc_delta += (1.0 - self.rho) * delta * delta
        param -= self.lr * delta


class RMSprop(Optimizer):
    """RMSprop: v = α v + (1-α) g²; p -= lr · g / (√v + ε)."""

    name = "rmsprop"
    slots = ("square_avg",)

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        self.alpha = alpha
        self.eps = eps

    def hyper(self):
        return {**super().hyper(), "alpha": self.alpha, "eps": self.eps}

    def _update(self, name, param, grad):
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        square_avg = self._slot("square_avg", name, param)
        square_avg *= self.alpha
        square_avg += (1.0 - self.alpha) * grad * grad
        param -= self.lr * grad / (np.sqrt(square_avg) + self.eps)


OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam", "adamw")


def make_optimizer(name: str, lr: float, *, momentum: float = 0.9, weight_decay: float = 0.0) -> Optimizer:
    """By name, as core.training.trainer spells them, with torch.optim's defaults for everything else.

    As in core.training.trainer, "adamw" uses weight decay 0.01 when none is given.
    """
    if name == "sgd":
        return SGD(lr, weight_decay)
    if name in ("momentum", "nesterov"):
        return Momentum(lr, momentum, weight_decay, nesterov=name == "nesterov")
    if name == "adagrad":
        return Adagrad(lr, weight_decay)
    if name == "adadelta":
        return Adadelta(lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return RMSprop(lr, weight_decay=weight_decay)
    if name == "adam":
        return Adam(lr, weight_decay=weight_decay)
    if name == "adamw":
        return Adam(lr, weight_decay=weight_decay or 0.01, decoupled=True)
    raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most max_norm (torch's rule, in place).

    Returns the norm before clipping (for logging: a norm that keeps hitting the cap means a too-high lr).
    """
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    scale = max_norm / (total + 1e-6)
    if scale < 1.0:
        for g in grads.values():
            g *= scale
    return total
