"""The GAN training config: frozen dataclasses; YAML files are short diffs over these defaults.

Load one with ``advkit.config.load_config(GanConfig, path, sets)``: unknown keys raise with the closest
valid key, values are type-checked, and the checks below turn bad values into one-line errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from advkit.gan.losses import LOSSES

HARDEN_OBJECTIVES = ("none", "fgsm", "fgsm_rs", "pgd")
# the training objectives: the five pure losses, and the duality gap itself ("generative minimization
# networks", Grnarova et al. 2021): both players minimize DG(G, D) = max_D' V(G, D') - min_G' V(G', D)
TRAIN_LOSSES = LOSSES + ("dg",)
LR_DECAYS = ("none", "linear")


@dataclass(frozen=True)
class GanDataConfig:
    """The real images the GAN learns: a dataset spec and where it is."""

    dataset: str = "mnist"          # a registered name, npz:PATH or folder:PATH (square 28, 32 or 64 px images)
    root: str | None = None         # --data-root; else ADVKIT_DATA; else ./datasets
    download: bool = False          # let torchvision download a named dataset
    train_limit: int | None = None  # use only the first N training images (smoke runs)

    def __post_init__(self) -> None:
        if self.train_limit is not None and self.train_limit < 1:
            raise ValueError(f"data.train_limit must be >= 1, got {self.train_limit}")


@dataclass(frozen=True)
class GanModelConfig:
    """The DCGAN generator and discriminator architectures."""

    z_dim: int = 100
    g_width: int = 64               # channels of the generator's last hidden block (DCGAN: 64)
    d_width: int = 64               # channels of the discriminator's first block
    spectral_norm: bool = False     # spectral normalization on every discriminator conv (Miyato et al. 2018)
    critic: bool | str = "auto"     # no BatchNorm in D (a Wasserstein critic); auto = true for the wgan loss
    g_batch_norm: bool = True       # BatchNorm in G's hidden layers (DCGAN); false for exact multi-process runs
    g_depth: int = 0                # stride-1 3x3 conv layers after each of G's hidden blocks (0: the paper's G)
    d_depth: int = 0                # the same in D, after each stride-2 block

    def __post_init__(self) -> None:
        for name in ("z_dim", "g_width", "d_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("g_depth", "d_depth"):
            if getattr(self, name) < 0:
                raise ValueError(f"model.{name} must be >= 0, got {getattr(self, name)}")
        if not isinstance(self.critic, bool) and self.critic != "auto":
            raise ValueError(f"model.critic must be true, false or auto, got {self.critic!r}")


@dataclass(frozen=True)
class HardenConfig:
    """Rob-GAN-style hardened discriminator (Liu & Hsieh 2019): D trains on adversarially perturbed real
    and generated images, through advkit's training objectives applied to ``TwoLogit(D)``."""
    objective: str = "none"         # none, fgsm, fgsm_rs, pgd
    eps: float = 0.0                # L-inf radius in pixel units
    steps: int = 10                 # pgd steps
    alpha: float | None = None      # attack step; default per objective (fgsm_rs 1.25*eps, pgd 2.5*eps/steps)

    def __post_init__(self) -> None:
        if self.objective not in HARDEN_OBJECTIVES:
            raise ValueError(f"unknown harden.objective {self.objective!r}; valid: {', '.join(HARDEN_OBJECTIVES)}")
        if self.objective != "none" and not (math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"harden.objective {self.objective} needs harden.eps > 0, got {self.eps}")
        if self.steps < 1:
            raise ValueError(f"harden.steps must be >= 1, got {self.steps}")


@dataclass(frozen=True)
class DualityGapConfig:
    """The duality gap (Grnarova et al. 2019) as a training monitor, every ``every`` generator steps, and
    the inner optimization of the ``dg`` training objective (``train_k`` steps per worst-case opponent)."""
    every: int = 0                  # generator steps between two estimates; 0 = off
    k: int = 20                     # optimizer steps for each worst-case opponent (the monitor)
    n: int = 256                    # held-out real images (the first n of the test split)
    lr: float | None = None         # the opponents' Adam learning rate; default lr_d
    train_k: int = 3                # loss: dg only: worst-case opponent steps per training step

    def __post_init__(self) -> None:
        if self.every < 0 or self.k < 1 or self.n < 1 or self.train_k < 1:
            raise ValueError(f"dg.every must be >= 0 and dg.k, dg.n, dg.train_k >= 1; got {self.every}, "
                             f"{self.k}, {self.n}, {self.train_k}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"dg.lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class GanConfig:
    """A whole GAN run: ``advkit train gan -c FILE`` overlays FILE on these defaults."""

    data: GanDataConfig = field(default_factory=GanDataConfig)
    model: GanModelConfig = field(default_factory=GanModelConfig)
    loss: str = "nonsaturating"     # minimax, nonsaturating, wgan (WGAN-GP with gp_weight > 0), hinge, lsgan, dg
    n_critic: int = 1               # D steps per G step (WGAN-GP: 5)
    d_warmup: int = 0               # D steps before the first G step
    real_label: float = 1.0         # one-sided label smoothing (e.g. 0.9); BCE and LSGAN losses only
    lr_g: float = 2e-4              # TTUR (Heusel et al. 2017): give D and G different rates
    lr_d: float = 2e-4
    betas: tuple[float, ...] = (0.5, 0.999)
    lr_decay: str = "none"          # none, or linear: both rates fall linearly to 0 over the run's batches
    gp_weight: float = 10.0         # WGAN-GP lambda, used with the wgan loss; 0 = no penalty
    ema_g: float = 0.0              # decay of an EMA copy of G (e.g. 0.999), used for samples and the checkpoint
    harden: HardenConfig = field(default_factory=HardenConfig)
    dg: DualityGapConfig = field(default_factory=DualityGapConfig)
    epochs: int = 5
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"            # auto, cpu, cuda, cuda:N
    deterministic: bool = False     # torch.use_deterministic_algorithms for the run
    sample_every: int = 1           # epochs between sample grids (the last epoch always gets one); 0 = none
    grid_n: int = 64                # images in a sample grid (fixed z)
    threads: int = 0                # torch intra-op threads for the run (restored after); 0 = leave torch's setting
    ema_every: int = 1              # generator steps between EMA updates (each one with decay ema_g ** ema_every)
    channels_last: bool = False     # both nets and the real images in the channels_last memory format
    compile: bool = False           # torch.compile G and D's training passes (inductor); eager when it cannot
    reuse_fake: bool = False        # G's step reuses the batch G made for D's step, and its graph: one G forward
                                    # per step instead of two (same z for both players' steps)

    def __post_init__(self) -> None:
        if self.loss not in TRAIN_LOSSES:
            raise ValueError(f"unknown GAN loss {self.loss!r}; valid: {', '.join(TRAIN_LOSSES)}")
        if self.epochs < 1 or self.batch_size < 1 or self.n_critic < 1 or self.grid_n < 1:
            raise ValueError("epochs, batch_size, n_critic and grid_n must be >= 1")
        if self.d_warmup < 0 or self.sample_every < 0 or self.threads < 0:
            raise ValueError("d_warmup, sample_every and threads must be >= 0")
        if self.ema_every < 1:
            raise ValueError(f"ema_every must be >= 1, got {self.ema_every}")
        for name in ("lr_g", "lr_d"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be > 0, got {v}")
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"unknown lr_decay {self.lr_decay!r}; valid: {', '.join(LR_DECAYS)}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {list(self.betas)}")
        if not (math.isfinite(self.gp_weight) and self.gp_weight >= 0):
            raise ValueError(f"gp_weight must be >= 0, got {self.gp_weight}")
        if not 0 <= self.ema_g < 1:
            raise ValueError(f"ema_g must be in [0, 1), got {self.ema_g}")
        if not 0 < self.real_label <= 1:
            raise ValueError(f"real_label must be in (0, 1], got {self.real_label}")
        if self.reuse_fake and self.loss == "dg":
            raise ValueError("reuse_fake does not apply to the dg loss (its players are worst-case copies); use false")
        if self.real_label != 1.0 and self.loss in ("wgan", "hinge", "dg"):
            raise ValueError(f"real_label (label smoothing) does not apply to the {self.loss} loss; use 1.0")

    @property
    def d_loss_name(self) -> str:
        """The pure loss D minimizes: the duality-gap objective plays the minimax game's value."""
        return "minimax" if self.loss == "dg" else self.loss

    @property
    def critic(self) -> bool:
        """Whether D is a normalization-free critic (``model.critic``, resolved)."""
        return self.loss == "wgan" if self.model.critic == "auto" else bool(self.model.critic)
