"""The network's activation and training loss (:class:`Model`).

Its initial weights are drawn in :mod:`fastgrok.weights`.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import (
    DEFAULT_LEAK,
    LOSSES,
    SMOOTH_ACTIVATIONS,
    check_field,
    check_model,
    check_patches,
)


@dataclass(frozen=True)
class Model:
    """The network's activation, its training loss and how a step uses them (docs/design.md 1, 5).

    phi(z) = max(z, leak z) with leak = 0 for "relu" (so ReLU is the leak-0 member of one
    formula, and every kernel computes both with the same branch-free arithmetic); the loss is
    one of :data:`LOSSES`, entering training only through the per-sample weight g_i = -l'(y_i f_i).
    Weight decay, a trained second layer and minibatches change the step around the same kernels
    (:attr:`stepwise`).

    Parameters
    ----------
    activation : {"relu", "leaky_relu"}
    leak : float or None
        Slope for negative pre-activations, in [0, 1); only with "leaky_relu" (None: 0.1).
    loss : {"logistic", "exponential", "hinge", "square"}
        l(z) = log(1 + exp(-z)), exp(-z), max(0, 1 - z) or (1 - z)^2 / 2 of the margin z = y f.
    weight_decay : float
        lambda >= 0 of the objective's (lambda / 2) ||W||_F^2: a step multiplies W by
        :meth:`decay` before adding the loss's update.
    lr_second : float or None
        The second layer's step size when it is trained (None: the second layer is fixed).
    batch_size : int or None
        Samples per minibatch step (None: full batch).
    regression : bool
        Real-valued targets with the square loss, (y - f)^2 / 2 (a fit's targets that are not
        all +-1): accuracies are NaN and the test MSE is reported; dense steps.
    patches : int
        P >= 1: the two-layer CNN, f(x) = sum_j a_j sum_p phi(<w_j, x^(p)>) over the P patches
        of a sample, whose rows follow each other in the engines' arrays (docs/design.md,
        "Patches"); 1 is the fully connected network.
    """

    activation: str = "relu"
    leak: float | None = None
    loss: str = "logistic"
    weight_decay: float = 0.0
    lr_second: float | None = None
    batch_size: int | None = None
    power: float | None = None
    smoothing: float | None = None
    regression: bool = False
    patches: int = 1

    def __post_init__(self):
        """Check the fields, as Config checks them."""
        for name in ("activation", "leak", "loss", "weight_decay", "lr_second", "batch_size",
                     "power", "smoothing", "patches"):
            object.__setattr__(self, name, check_field(name, getattr(self, name)))
        check_model(self.activation, self.leak, self.power, self.smoothing)
        check_patches(self.patches, self.lr_second, self.batch_size)
        if self.regression and self.loss != "square":
            raise ValueError(f"real-valued targets need loss='square', got loss={self.loss!r}")

    @property
    def slope(self) -> float:
        """The leak the kernels use: 0.0 for ReLU and ReLU^q."""
        if self.activation in ("relu", "relu_power"):
            return 0.0
        return DEFAULT_LEAK if self.leak is None else float(self.leak)

    @property
    def smooth(self) -> bool:
        """A smooth activation (its own kernels; no linear regime)."""
        return self.activation in SMOOTH_ACTIVATIONS

    @property
    def act_code(self) -> int:
        """The smooth kernels' activation code (1: relu_power, 2: smoothed_leaky_relu)."""
        return 1 + SMOOTH_ACTIVATIONS.index(self.activation) if self.smooth else 0

    @property
    def act_param(self) -> float:
        """relu_power's q (default 2) or smoothed_leaky_relu's h (default 1); 0 otherwise."""
        if self.activation == "relu_power":
            return 2.0 if self.power is None else float(self.power)
        if self.activation == "smoothed_leaky_relu":
            return 1.0 if self.smoothing is None else float(self.smoothing)
        return 0.0

    @property
    def act(self):
        """The activation as :mod:`fastgrok.reference` takes it.

        The slope, or a :class:`fastgrok.reference.SmoothActivation`.
        """
        if not self.smooth:
            return self.slope
        from .reference import SmoothActivation

        return SmoothActivation(self.activation, self.slope, self.act_param)

    @property
    def loss_code(self) -> int:
        """The loss as the kernels' integer code (its index in :data:`LOSSES`)."""
        return LOSSES.index(self.loss)

    @property
    def g0(self) -> float:
        """-l'(0): the loss weight of every sample while the outputs are tiny."""
        return 0.5 if self.loss == "logistic" else 1.0

    def decay(self, lr) -> float:
        """The factor 1 - lr lambda a step multiplies W by (exactly 1.0 without weight decay)."""
        return 1.0 - float(lr) * self.weight_decay if self.weight_decay else 1.0

    @property
    def pooled(self) -> bool:
        """Whether a sample's output sums several rows (patches > 1): the patch kernels."""
        return self.patches > 1

    @property
    def stepwise(self) -> bool:
        """Whether a step is more than the full-batch update of W by the fused kernels.

        Weight decay, a trained a, or minibatches.
        """
        return bool(self.weight_decay) or self.lr_second is not None or \
            self.batch_size is not None

    @classmethod
    def of(cls, cfg) -> "Model":
        """The model of a Config."""
        lr_second = None
        if cfg.train_second_layer:
            lr_second = cfg.lr if cfg.lr_second is None else cfg.lr_second
        return cls(cfg.activation, cfg.leak, cfg.loss, cfg.weight_decay, lr_second,
                   cfg.batch_size, cfg.power, cfg.smoothing, patches=cfg.patches)
