"""How a training step is computed: torch autograd through our LSTM, or the hand-derived NumPy gradients.

The trainer owns the loop, the schedule, events and checkpoints; a backend owns the weights and the
optimizer and answers four questions: take a step on this batch, score these poems, give me a torch
model to sample from, and what must a checkpoint hold to continue exactly.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from core.errors import CheckpointError, PoemError
from core.model import ModelConfig, PoetryLM, autocast, token_cross_entropy
from core.runs import checkpoint as ck
from core.runs import state_json
from core.training import distributed as dist
from core.training.perplexity import score_poems
from core.training.settings import OPTIMIZERS


def make_torch_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float):
    O = torch.optim
    if name == "sgd":
        return O.SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "momentum":
        return O.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "nesterov":
        return O.SGD(params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    if name == "adagrad":
        return O.Adagrad(params, lr=lr, weight_decay=weight_decay)
    if name == "adadelta":
        return O.Adadelta(params, lr=lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return O.RMSprop(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return O.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return O.AdamW(params, lr=lr, weight_decay=weight_decay or 0.01)
    raise PoemError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def _with_tied(state: dict, tied: bool) -> dict:
    return {**state, "head.weight": state["embedding.weight"]} if tied else state


class TorchBackend:
    """Autograd through PoetryLM (our LSTM) and a torch.optim optimizer; DDP under torchrun."""

    name = "torch"

    def __init__(
        self,
        mcfg: ModelConfig,
        optimizer: str,
        lr: float,
        momentum: float,
        weight_decay: float,
        clip: float,
        device: torch.device,
        precision: str = "fp32",
        vocab=None,
    ):
        self.device = device
        self.clip = clip
        # autocast: every matmul (output layer and LSTM) in bfloat16, the rest float32
        self.precision = precision
        self.model = PoetryLM(mcfg, vocab=vocab).to(device)
        self.optimizer = make_torch_optimizer(optimizer, self.model.parameters(), lr, momentum, weight_decay)
        self.net = self.model  # what the forward pass calls: the model, or its DDP wrapper
        if dist.world_size() > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    # the LR lives in the optimizer; the trainer's ReduceLROnPlateau drives it
    @property
    def lr_holder(self) -> torch.optim.Optimizer:
        return self.optimizer

    def sync_lr(self) -> None:
        pass

    def train_step(self, batch) -> tuple[float, float] | None:
        """One optimizer step; None when the loss or the gradient is not finite (the step is skipped)."""
        self.model.train()
        with autocast(self.device, self.precision):
            logits, _ = self.net(batch.inputs, lengths=batch.lengths, mask=batch.mask)
        loss = token_cross_entropy(logits, batch.targets[batch.mask])
        self.optimizer.zero_grad(set_to_none=True)
        if not dist.all_finite(loss.detach()):
            return None
        loss.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.clip)
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        if not torch.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.optimizer.step()
        return float(loss.detach()), float(norm)

    def score(self, encoded: list[list[int]]) -> tuple[float, int, int]:
        return score_poems(self.model, encoded, batch_size=64, device=self.device)

    def torch_model(self) -> PoetryLM:
        return self.model

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors, info = state_json.flatten_optimizer(self.optimizer.state_dict())
        return {**ck.model_tensors(self.model), **tensors}, info

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """The model's weights (and buffers) from a state dict whose tied head is stored once."""
        self.model.load_state_dict(_with_tied(state, self.model.cfg.tie_weights))

    def restore(self, ckpt: ck.Checkpoint) -> None:
        self.load_weights(ckpt.model_state)
        state = ckpt.optimizer_state()
        if state is not None:
            try:
                self.optimizer.load_state_dict(state)
            except (ValueError, KeyError) as exc:
                raise CheckpointError(f"{ckpt.path.name}: optimizer state does not fit ({exc})") from exc


class NumpyBackend:
    """The assignment's bonus: gradients from docs/lstm-derivatives.md (core.reference.numpy_lm), NumPy
    optimizers.

    Weights start as a PoetryLM initialised the same way, so both backends begin from the same point for
    the same seed. Evaluation and sampling copy the weights into that torch model: the definition of
    perplexity and the sampler are then literally the same code for both backends.
    """

    name = "numpy"

    def __init__(
        self,
        mcfg: ModelConfig,
        optimizer: str,
        lr: float,
        momentum: float,
        weight_decay: float,
        clip: float,
        device: torch.device,
        seed: int,
    ):
        from core.reference import numpy_optim
        from core.reference.numpy_lm import NumpyLM

        if device.type != "cpu":
            raise PoemError("--backend numpy runs on the CPU; use --device cpu")
        if dist.world_size() > 1:
            raise PoemError("--backend numpy trains in one process; run it without torchrun")
        self.device = device
        self.precision = "fp32"
        self.clip = clip
        self.model = PoetryLM(mcfg)
        self.net = NumpyLM.from_torch_state(
            self.model.state_dict(), dropout=mcfg.dropout, tie_weights=mcfg.tie_weights, dtype=np.float32
        )
        self.optimizer = numpy_optim.make_optimizer(
            optimizer, lr, momentum=momentum, weight_decay=weight_decay
        )
        self.rng = np.random.default_rng(seed)  # dropout masks
        # ReduceLROnPlateau needs a torch optimizer to hold the LR; this one only carries the number
        self._lr_param = torch.zeros(1, requires_grad=True)
        self.lr_holder = torch.optim.SGD([self._lr_param], lr=lr)
        self._clip_grad_norm = numpy_optim.clip_grad_norm

    def sync_lr(self) -> None:
        self.optimizer.lr = self.lr_holder.param_groups[0]["lr"]

    def train_step(self, batch) -> tuple[float, float] | None:
        loss, cache = self.net.forward(
            batch.inputs.numpy(),
            batch.targets.numpy(),
            batch.mask.numpy(),
            batch.lengths.numpy(),
            train=True,
            rng=self.rng,
        )
        if not math.isfinite(float(loss)):
            return None
        grads = self.net.backward(cache)
        norm = (
            self._clip_grad_norm(grads, self.clip)
            if self.clip > 0
            else math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
        )
        if not math.isfinite(norm):
            return None
        self.optimizer.step(self.net.params, grads)
        return float(loss), float(norm)

    def torch_model(self) -> PoetryLM:
        """The torch PoetryLM holding the current NumPy weights (copied in place)."""
        with torch.no_grad():
            params = dict(self.model.named_parameters())
            for name, value in self.net.to_state_dict().items():
                if name in params:
                    params[name].copy_(torch.from_numpy(np.ascontiguousarray(value)))
        return self.model

    def score(self, encoded: list[list[int]]) -> tuple[float, int, int]:
        return score_poems(self.torch_model(), encoded, batch_size=64, device=self.device)

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        opt = self.optimizer.state_dict()
        tensors = {
            f"npoptim.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in opt["tensors"].items()
        }
        info = {
            "name": opt["name"],
            "hyper": opt["hyper"],
            "steps": opt["steps"],
            "rng": self.rng.bit_generator.state,
        }
        return {**ck.model_tensors(self.torch_model()), **tensors}, {"numpy": info}

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """The model's weights from a state dict whose tied head is stored once (NumPy copies made anew)."""
        from core.reference.numpy_lm import NumpyLM

        self.model.load_state_dict(_with_tied(state, self.model.cfg.tie_weights))
        self.net = NumpyLM.from_torch_state(
            self.model.state_dict(),
            dropout=self.model.cfg.dropout,
            tie_weights=self.model.cfg.tie_weights,
            dtype=np.float32,
        )

    def restore(self, ckpt: ck.Checkpoint) -> None:
        self.load_weights(ckpt.model_state)
        info = (ckpt.meta.get("optimizer", {}).get("state") or {}).get("numpy")
        if info is None:
            raise CheckpointError(f"{ckpt.path.name} was not trained with --backend numpy")
        tensors = {
            k[len("npoptim.") :]: v.numpy() for k, v in ckpt.tensors.items() if k.startswith("npoptim.")
        }
        self.optimizer.load_state_dict(
            {"name": info["name"], "hyper": info["hyper"], "steps": info["steps"], "tensors": tensors}
        )
        self.rng.bit_generator.state = info["rng"]
