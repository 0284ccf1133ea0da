"""Same seed, same bits on any one machine, whatever the memory layout of a run.

MKL, torch's BLAS on x86-64, picks its small-GEMM code path by where the operands start
in memory, so the last bits of a product depend on the alignment of the activations and
the weights (measured on an AMD EPYC with AVX2: `F.linear` of a [7, 64] activation that
starts 4 bytes past a 16-byte boundary differs from the aligned product in the last bit;
on AVX-512 machines 64-byte boundaries matter too, so buffers from NumPy's allocator are
enough to change a run). A fresh process then reproduces a run, but a resumed one, or a
copy of an agent, does not. MKL's conditional numerical reproducibility in strict mode
(``MKL_CBWR=AUTO,STRICT``) removes the dependence; it takes effect only if it is in the
environment before the process's first matrix product, so `request_strict_mode` runs as
the package is imported, and `check_strict_mode` checks that it took effect.

Beyond that, trpo keeps its own operands aligned where it can: parameters keep their own
storage (`assign_flat`), and NumPy data enters torch through `aligned_tensor`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from collections.abc import Iterator

import numpy as np
import torch

STRICT_MODE = "AUTO,STRICT"
ALIGNMENT = 64
"""Bytes: torch's CPU allocator aligns every tensor to a cache line, AVX-512's width."""


class ReproducibilityWarning(UserWarning):
    """Results in this process may depend on memory alignment."""


def request_strict_mode() -> None:
    """Ask MKL for strict reproducibility unless the user chose an ``MKL_CBWR`` setting."""
    os.environ.setdefault("MKL_CBWR", STRICT_MODE)


def alignment_dependent() -> bool:
    """Whether a product's bits change when its activation starts at an odd offset: a few
    small products, each computed aligned and at offsets of 1, 2 and 3 floats (~50 µs)."""
    generator = torch.Generator().manual_seed(0)
    for rows, cols, outputs in ((7, 64, 1), (7, 64, 6), (64, 11, 3), (5, 17, 2)):
        x = torch.randn(rows, cols, generator=generator)
        w = torch.randn(outputs, cols, generator=generator)
        aligned = torch.nn.functional.linear(x, w)
        for offset in (1, 2, 3):
            shifted = torch.empty(rows * cols + offset)[offset:].view(rows, cols)
            shifted.copy_(x)
            if not torch.equal(torch.nn.functional.linear(shifted, w), aligned):
                return True
    return False


def check_strict_mode() -> None:
    """Warn, with the fix, when products in this process depend on alignment."""
    if alignment_dependent():
        warnings.warn(
            f"matrix products in this process depend on memory alignment (MKL_CBWR="
            f"{os.environ.get('MKL_CBWR', 'unset')} did not take effect: torch ran a product "
            "before trpo was imported, or MKL_CBWR names a non-strict mode), so a resumed or "
            "copied run will not repeat an uninterrupted one bit for bit. Fix: import trpo "
            f"before any torch computation, or set MKL_CBWR={STRICT_MODE} in the environment "
            "before Python starts.",
            ReproducibilityWarning,
            stacklevel=3,
        )


def aligned_tensor(array: np.ndarray) -> torch.Tensor:
    """``array`` as a CPU tensor whose data starts on a 64-byte boundary: shared with the
    array where it already does, otherwise copied into torch's (aligned) memory."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor if tensor.data_ptr() % ALIGNMENT == 0 else tensor.clone()


def assign_flat(theta: torch.Tensor, params: list[torch.Tensor]) -> None:
    """Copy the flat vector ``theta`` into ``params`` in place. Unlike torch's
    `vector_to_parameters`, which makes every parameter a view at some offset of
    ``theta``, each parameter keeps its own aligned storage, as a loaded one has."""
    with torch.no_grad():
        offset = 0
        for param in params:
            n = param.numel()
            param.copy_(theta[offset : offset + n].view_as(param))
            offset += n


def seeded_generator(seed: int, stream: str) -> torch.Generator:
    """A torch generator for one named random stream of a run (``init``, ``rollout``,
    ...): streams of one seed are independent of each other, so a change in how often
    one is drawn from leaves the others' numbers as they were."""
    key = int.from_bytes(hashlib.sha256(stream.encode()).digest()[:4], "little")
    state = np.random.SeedSequence([seed, key]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` inside the block, as before it after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
