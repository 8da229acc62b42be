"""Mixed precision (``training.amp``): the forward under ``torch.autocast`` in bfloat16 or float16, the loss and
the regularizer in float32, and for float16 a ``GradScaler``.

- ``none``: float32 throughout (the default; bit-exact on CPU).
- ``bf16``: autocast to bfloat16 (CUDA and CPU); same exponent range as float32, so no loss scaling.
- ``fp16``: autocast to float16 with dynamic loss scaling. A step whose gradients overflow is skipped by the
  scaler and the scale halved: that is the scaler working, not a divergence, so the NaN guard (which reads the
  float32 loss, the regularizer and the weights) does not stop the run for it. The run is recorded as diverged
  only when the gradients stay non-finite while the scale falls below 2**-24 (about 40 skipped steps in a row
  from the initial 2**16): no scale then makes them finite. The scaler's state is part of the resumable state.

The same code runs on the CPU (CPU autocast supports both types), so CPU tests cover this path; a CUDA device
only changes which kernels run.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MIN_SCALE = 2.0 ** -24  # below this every scaled float16 gradient underflows: the gradients are not finite


class Precision:
    def __init__(self, amp: str = "none", device: torch.device = torch.device("cpu")):
        self.amp, self.device = amp, device
        self.dtype = AMP_DTYPES[amp]
        self.scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
        self.skipped = 0  # steps the scaler skipped, over the run

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None else nullcontext()

    def backward_step(self, total: torch.Tensor, optimizer: torch.optim.Optimizer) -> bool:
        """Backward and optimizer step; False when the fp16 scaler skipped the step."""
        self.scaled(total).backward()
        return self.step(optimizer)

    def scaled(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` times the fp16 loss scale (``t`` itself otherwise)."""
        return t if self.scaler is None else self.scaler.scale(t)

    def scale(self) -> float:
        """The factor the gradients in ``.grad`` carry (the fp16 loss scale; 1 otherwise)."""
        return 1.0 if self.scaler is None else float(self.scaler.get_scale())

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """The optimizer step on gradients that carry ``scale()``; False when the fp16 scaler skipped it
        (some gradient was not finite)."""
        if self.scaler is None:
            optimizer.step()
            return True
        before = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        stepped = self.scaler.get_scale() >= before  # the scale shrinks exactly when the step was skipped
        self.skipped += not stepped
        return stepped

    def collapsed(self) -> bool:
        return self.scaler is not None and self.scaler.get_scale() < MIN_SCALE

    def state_dict(self) -> dict | None:
        return None if self.scaler is None else {"scaler": self.scaler.state_dict(), "skipped": self.skipped}

    def load_state_dict(self, state: dict | None) -> None:
        if self.scaler is not None and state is not None:
            self.scaler.load_state_dict(state["scaler"])
            self.skipped = state["skipped"]
