"""The packed layout of a padded batch: only real (row, step) pairs, time-major, longest rows first.

A batch [B, T, ·] with lengths becomes N = Σ lengths rows; step t's rows are one contiguous block, after
those of steps 0 .. t-1, so a time loop takes a slice per step and padding costs nothing:

    batch (B=3, T=4, lengths 4, 2, 3)        packed (rows sorted longest first: 0, 2, 1)
      row 0:  a0 a1 a2 a3                      step 0: a0 c0 b0
      row 1:  b0 b1 .  .                       step 1: a1 c1 b1
      row 2:  c0 c1 c2 .                       step 2: a2 c2
                                               step 3: a3
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import torch


@dataclass
class Packing:
    """Where each real (row, step) of a padded batch goes in the packed, time-major layout.

    Rows are sorted longest first, so the rows that take step t are the first batch_sizes[t] of them (as
    in a PackedSequence) and step t's rows are one contiguous block of the packed layout, after those of
    steps 0 .. t-1. Only real steps are computed, stored and multiplied: padding costs nothing.
    """

    batch_sizes: list[int]  # how many rows take step t (only steps some row takes)
    index: torch.Tensor  # [N] packed position -> flat position b * T + t in the batch
    order: torch.Tensor  # [B] sorted position -> row of the batch
    restore: torch.Tensor  # [B] row of the batch -> sorted position
    stepping_rows: torch.Tensor | None  # rows of the batch with at least one step (None: all of them)
    last: torch.Tensor  # packed position of the last step of each of those rows

    @classmethod
    def of(cls, lengths: torch.Tensor | None, B: int, T: int, device) -> Packing:
        if lengths is None:
            return unpadded_packing(B, T, str(device))
        lengths = lengths.to("cpu", torch.long).clamp(0, T)
        sorted_lengths, order = torch.sort(lengths, descending=True, stable=True)
        takes_step = torch.arange(T)[:, None] < sorted_lengths[None, :]  # [T, B]: sorted row j takes step t
        batch_sizes = [n for n in takes_step.sum(1).tolist() if n > 0]
        offsets = [0, *itertools.accumulate(batch_sizes)][:-1]
        steps, rows = takes_step.nonzero(as_tuple=True)  # time-major: step by step, rows in sorted order
        starts = torch.tensor([*offsets, 0], dtype=torch.long)  # one spare entry for rows with no step
        restore = torch.empty_like(order)
        restore[order] = torch.arange(B)
        stepping = lengths > 0
        last = starts[lengths - 1] + restore  # row b's last step, at its sorted position within that step
        move = functools.partial(torch.Tensor.to, device=device)
        return cls(
            batch_sizes,
            index=move(order[rows] * T + steps),
            order=move(order),
            restore=move(restore),
            stepping_rows=None if bool(stepping.all()) else move(stepping.nonzero()[:, 0]),
            last=move(last[stepping]),
        )


@functools.lru_cache(maxsize=64)
@torch.inference_mode(False)  # cached for later calls, which autograd may record (and save the index)
def unpadded_packing(B: int, T: int, device: str) -> Packing:
    """Every row takes every step (no lengths): the packed layout is the batch, time-major."""
    rows = torch.arange(B, device=device)
    return Packing(
        batch_sizes=[B] * T,
        index=torch.arange(B * T, device=device).view(B, T).t().reshape(-1),
        order=rows,
        restore=rows,
        stepping_rows=None,
        last=rows + (T - 1) * B,
    )


def unpack(packed, P: Packing, B: int, T: int):
    """Packed rows back to the batch's [B, T, ·] layout, 0 at padded steps."""
    full = packed.new_empty if packed.shape[0] == B * T else packed.new_zeros  # no padding: nothing to zero
    return full(B * T, packed.shape[1]).index_copy_(0, P.index, packed).view(B, T, -1)


def final_state(packed, initial, P: Packing):
    """Each row's state after its last real step (its initial state if it has none), in batch order."""
    if P.stepping_rows is None:
        return packed.index_select(0, P.last)
    final = initial.clone()
    final[P.stepping_rows] = packed.index_select(0, P.last)
    return final
