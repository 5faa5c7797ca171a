"""Moving sampled batches from the host to the training device."""

from __future__ import annotations

import torch

from her.relabel import Transitions


class BatchToDevice:
    """``Transitions`` of NumPy arrays -> ``Transitions`` of float32 tensors on ``device``.

    On the CPU the tensors share memory with the arrays (no copy). On a GPU each batch goes through
    pinned host buffers, reused across calls, with asynchronous copies; an event makes sure the previous
    copy has left a buffer before it is overwritten.
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self._pinned: list[torch.Tensor] | None = None
        self._copied: torch.cuda.Event | None = None

    def __call__(self, batch: Transitions) -> Transitions:
        if self.device.type == "cpu":
            return Transitions(*(torch.from_numpy(x) for x in batch))
        if self._pinned is None or any(p.shape != x.shape for p, x in zip(self._pinned, batch)):
            self._pinned = [torch.empty(x.shape, dtype=torch.float32).pin_memory() for x in batch]
        if self._copied is not None:
            self._copied.synchronize()
        out = []
        for host, x in zip(self._pinned, batch):
            host.numpy()[...] = x
            out.append(host.to(self.device, non_blocking=True))
        self._copied = torch.cuda.Event()
        self._copied.record()
        return Transitions(*out)
