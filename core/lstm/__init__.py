"""Our LSTM: the layer (core.lstm.layer), its fused autograd node with hand-derived BPTT (fused), the packed
layout it runs in (packing), its time loops in C++ or torch ops (loops, native, csrc/), their matrix
products (matmul), and dropout with a position-keyed Philox mask (dropout).

    from core.lstm import LSTM
    lstm = LSTM(input_size, hidden_size, num_layers=2, dropout=0.1, impl="fused")
    out, (h_n, c_n) = lstm(x, state=None, lengths=None)
"""

from core.lstm.layer import IMPLS, LSTM
from core.lstm.loops import compiled_loops

__all__ = ["IMPLS", "LSTM", "compiled_loops"]
