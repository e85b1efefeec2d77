"""The one quantizer interface.

A method (``QuantMethod`` subclass, registered by name) provides

* quantizers for weights and activations as plain ``nn.Module``s (``WeightQuantizer``, ``ActQuantizer``)
  with their own straight-through/autograd rules, and says where its activation quantizers sit
  (``act_site``: on the input of each quantized conv/linear, or after each BatchNorm2d);
* the default first/last-layer policy of its paper's code;
* the training hooks a method may need beyond cross-entropy on logits: a replaceable ``task_loss``, an
  ``extra_loss`` gathered from its quantizers, ``training_step`` (control of backward/optimizer step, e.g.
  per-domain gradient aggregation), ``post_step`` (closed-form state updates) and ``predict`` (a logit
  transform at evaluation). Per-batch facts (labels, domain id, class prior) reach quantizers through the
  shared ``BatchContext``.

No method-specific branch exists outside the method's own file.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, ClassVar, Literal, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from methods.context import BatchContext, DomainBatch
from methods.quant import is_full_precision

ActSite = Literal["input", "post_bn"]
LayerMode = Literal["same", "8bit", "fp"]
LAYER_MODES: tuple[str, ...] = ("same", "8bit", "fp")


@dataclass(frozen=True)
class LayerPolicy:
    """Precision of the first and last quantizable layer: ``same`` as the rest, ``8bit``, or ``fp``."""

    first: LayerMode = "same"
    last: LayerMode = "same"

    def __post_init__(self) -> None:
        for role, mode in (("first", self.first), ("last", self.last)):
            if mode not in LAYER_MODES:
                raise ValueError(f"invalid layer policy {role}={mode!r}; valid: {', '.join(LAYER_MODES)}")

    def bits_for(self, role: str, w_bits: int, a_bits: int) -> tuple[int, int]:
        mode = {"first": self.first, "last": self.last}.get(role, "same")
        if mode == "8bit":
            # A full-precision run stays full precision everywhere (the 32-bit identity invariant).
            return (w_bits if is_full_precision(w_bits) else 8), (a_bits if is_full_precision(a_bits) else 8)
        if mode == "fp":
            return 32, 32
        return w_bits, a_bits

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class Quantizer(nn.Module):
    """A fake quantizer: ``forward`` returns at most 2^bits distinct values; identity at 32 bits."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = int(bits)
        self.context: BatchContext | None = None  # shared with the whole model, set by prepare()

    @property
    def enabled(self) -> bool:
        return not is_full_precision(self.bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantize(x) if self.enabled else x

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class WeightQuantizer(Quantizer):
    """Quantizes a weight tensor. ``init_from_weight`` runs once, on the loaded (pre-trained) weights."""

    def init_from_weight(self, weight: torch.Tensor) -> None:
        """Data-dependent initialisation (LSQ's step size); default: nothing to initialise."""


class ActQuantizer(Quantizer):
    """Quantizes activations.

    Whether the range is signed is decided from the first *training* (or calibration) batch when not given:
    a post-ReLU input is non-negative, the network input or a linear bottleneck output is not. The decision
    and the initialisation are buffers, so they survive a checkpoint.
    """

    signed_flag: torch.Tensor  # buffers, registered in __init__
    initialized: torch.Tensor

    def __init__(self, bits: int, signed: bool | None = None) -> None:
        super().__init__(bits)
        flag = -1 if signed is None else int(signed)
        self.register_buffer("signed_flag", torch.tensor(flag, dtype=torch.int8))
        self.register_buffer("initialized", torch.tensor(False))
        self.calibrating = False
        # Host-side mirrors of the two buffers: once read as set they are not read again, so a forward on a
        # GPU does not synchronise with the device (reset when a state dict is loaded).
        self._ready = False
        self._signed: bool | None = None

    @property
    def signed(self) -> bool | None:
        if self._signed is None:
            flag = int(self.signed_flag)
            if flag < 0:
                return None
            self._signed = bool(flag)
        return self._signed

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._ready, self._signed = False, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        if not self._ready:
            self._ready = bool(self.initialized)
        if not self._ready:
            if not (self.training or self.calibrating):
                # Initialising from evaluation data would leak the test set into the model.
                raise RuntimeError("activation quantizer used before calibration; call methods.calibrate() "
                                   "on a training batch first")
            self._initialize(x.detach())
        return self.quantize(x)

    def _initialize(self, x: torch.Tensor) -> None:
        if self.signed is None:
            self.signed_flag.fill_(int(bool((x < 0).any())))
        self.init_from_batch(x)
        self.initialized.fill_(True)
        self._ready = True

    def init_from_batch(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation from the first batch; default: nothing to initialise."""

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}"


LossFn = Callable[[DomainBatch], torch.Tensor]


class QuantMethod:
    """Base class of every method. Subclasses override only what their paper needs."""

    name: ClassVar[str] = "base"
    act_site: ClassVar[ActSite] = "input"
    # Layer types this method quantizes; others are kept in full precision and reported as such.
    quantized_types: ClassVar[tuple[type[nn.Module], ...]] = (nn.Conv2d, nn.Linear)
    default_layer_policy: ClassVar[LayerPolicy] = LayerPolicy("8bit", "8bit")
    # The method's own knobs with their defaults; the only keys accepted by __init__.
    defaults: ClassVar[dict[str, Any]] = {}
    # Optuna search space: name -> ("float", low, high, log) | ("int", low, high)
    # | ("categorical", [choices]).
    search_space: ClassVar[dict[str, tuple]] = {}
    quantizes: ClassVar[bool] = True
    # False: weights only (QT-DoG); such a method runs at A32 and rejects other activation bits.
    quantizes_activations: ClassVar[bool] = True
    # Which runner executes a run of this method: "qat" (the trainer's epoch loop) or "ptq" (post-training).
    kind: ClassVar[str] = "qat"
    # True: a step's gradient is what one ordinary ``backward()`` of the step's total loss leaves in
    # ``.grad``, so a data-parallel run can average it with DistributedDataParallel's reducer (overlapped
    # with the backward). False: the method builds gradients itself (``torch.autograd.grad``), which DDP
    # never sees; its data-parallel runs average ``.grad`` at the optimizer step (docs/distributed.md).
    gradients_from_backward: ClassVar[bool] = True

    def __init__(self, **hparams: Any) -> None:
        unknown = sorted(set(hparams) - set(self.defaults))
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(f"unknown hyper-parameter {unknown[0]!r} for method {self.name!r}; "
                             f"valid: {valid}")
        self.hparams: dict[str, Any] = {**self.defaults, **hparams}
        self.validate()

    def validate(self) -> None:
        """Check option values; raise a one-line ValueError naming the bad value and the valid choices."""

    def _check_choice(self, key: str, choices: Sequence[str]) -> None:
        if self.hparams[key] not in choices:
            raise ValueError(f"invalid {self.name}.{key}={self.hparams[key]!r}; valid: {', '.join(choices)}")

    # -- construction -------------------------------------------------------------------------------
    def weight_quantizer(self, bits: int) -> WeightQuantizer:
        raise NotImplementedError

    def act_quantizer(self, bits: int, signed: bool | None = None) -> ActQuantizer:
        raise NotImplementedError

    def attach(self, model: nn.Module, context: BatchContext) -> None:
        """Called once after prepare(), with the model's shared context (e.g. to size per-domain state)."""

    # -- training hooks -------------------------------------------------------------------------------
    def task_loss(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor,
                  context: BatchContext) -> torch.Tensor:
        """The classification loss on labelled samples; cross-entropy unless a paper replaces it."""
        return F.cross_entropy(logits, targets)

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """A loss term gathered from the quantizers after a forward pass (e.g. AlignQ's ADMM terms)."""
        return None

    def training_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, parts: Sequence[DomainBatch],
                      loss_fn: LossFn) -> torch.Tensor:
        """One optimisation step over the domain parts of a batch; returns the (detached) total loss.

        ``loss_fn(part)`` runs the forward pass for one domain part (setting the context) and returns its
        full loss (task + protocol + extra terms). Methods that aggregate per-domain gradients override this.
        """
        optimizer.zero_grad(set_to_none=True)
        # sum() starts from int 0 (0 + t0): kept as is so the values stay those recorded; a tensor here.
        total = cast(torch.Tensor, sum(loss_fn(part) for part in parts))
        total.backward()
        optimizer.step()
        self.post_step(model)
        return total.detach()

    def post_step(self, model: nn.Module) -> None:
        """State updates after the optimizer step (e.g. AlignQ's closed-form D̃/Γ updates)."""

    def predict(self, logits: torch.Tensor, context: BatchContext) -> torch.Tensor:
        """Transform logits at evaluation (e.g. post-hoc logit adjustment); identity by default."""
        return logits

    # -- state outside the model's modules ------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"method {self.name!r} keeps no state but a checkpoint holds some")
