"""The GAN training loop: alternating updates of a DCGAN discriminator and generator.

Per batch of real images: one discriminator (critic) step against fresh fakes with the generator frozen;
after ``d_warmup`` D steps, one generator step every ``n_critic`` D steps with the discriminator frozen.
Options: the five GAN losses, one-sided label smoothing, TTUR, the WGAN-GP penalty, a Rob-GAN-style
hardened discriminator (trained on adversarial real and fake inputs through advkit's training objectives),
an EMA generator, a duality-gap monitor, and the duality gap as the training objective (``loss: dg``: each
player steps against the other's worst-case opponent, found by ``dg.train_k`` Adam steps from a copy).
Per epoch: a sample grid from a fixed z, a metrics line, the loss curves and an atomic resume checkpoint;
SIGINT/SIGTERM stop the run between two steps after a mid-epoch resume checkpoint (one process only).
CPU or CUDA; under ``torchrun`` every process takes its slice of each global batch (and of its z),
gradients are averaged over processes after each backward pass (what DDP does; D's step runs several forward
passes per backward, which DDP's wrapper does not allow), and rank 0 alone writes. gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from advkit.config import to_dict
from advkit.data import load_dataset
from advkit.errors import AdvkitError
from advkit.gan import losses
from advkit.gan.config import GanConfig
from advkit.gan.duality_gap import duality_gap
from advkit.models.checkpoint import save_gan_net
from advkit.models.dcgan import FAKE, REAL, DCGANDiscriminator, DCGANGenerator, TwoLogit
from advkit.runtime import faults
from advkit.runtime.device import resolve_device, seed_everything
from advkit.runtime.distributed import Dist, init_distributed, shutdown
from advkit.runtime.io import atomic_write_bytes
from advkit.runtime.run import (
    MID_EPOCH,
    RunFolder,
    cpu_state,
    deterministic,
    ema_update,
    epoch_order_state,
    progress_bar,
    restore_rng,
    rng_state,
    skip_done_steps,
)
from advkit.runtime.signals import StopFlag, graceful
from advkit.viz import loss_curves_png, sample_grid_png

log = logging.getLogger(__name__)
# keys that may change between a run and its resumption
RESUMABLE_CHANGES = {"device", "data.root", "threads", "compile"}


def train_gan(cfg: GanConfig, out_dir: str | Path | None = None, *, progress: bool = False, resume: bool = False,
              on_epoch: Callable[[dict], None] | None = None, profile: bool = False,
              probe: tuple[int, Callable[[dict], None]] | None = None) -> tuple[DCGANGenerator, dict]:
    """Train a DCGAN (Radford et al. 2016) per ``cfg``, in one process or under torchrun.

    With ``out_dir``, rank 0 writes ``config.yaml``, ``metrics.jsonl``, ``samples_epochEEE.png``,
    ``losses.png`` and ``last.ckpt`` every epoch, and ``generator.safetensors`` +
    ``discriminator.safetensors`` (each with a ``.json``) at the end.

    Args:
        cfg: the GAN config.
        out_dir: the run folder; ``None`` writes nothing.
        progress: show a progress bar per epoch.
        resume: continue from ``out_dir/last.ckpt`` when it exists (bit-identical to an uninterrupted run
            on the CPU, also from a checkpoint written inside an epoch on a signal); it must hold the same config.
        on_epoch: called on rank 0 with each epoch's metrics.
        profile: time the parts of every step (data, each net's forward, backward and optimizer step, the EMA,
            the loss checks, the duality-gap monitor, sample grids, curves, checkpoints) into each epoch's
            metrics as ``profile_s`` (seconds per part; ``cfg.threads`` and the wall time beside them).
        probe: ``(every, fn)``: every ``every`` generator steps and after the last one, ``fn`` is called on
            rank 0 with ``{"epoch", "g_steps", "train_s", "generator", "raw_generator"}``: the sampling
            generator (the EMA copy when there is one; eval mode; leave it as found), the trained G when the
            sampler is its EMA (else None; put it in eval mode to sample), and the seconds of training so far,
            from the start of set-up, without the time spent in ``fn`` (a time-to-quality clock).

    Returns:
        The final generator (the EMA copy when ``ema_g > 0``; eval mode, on the training device) and the
        last epoch's metrics.

    Raises:
        AdvkitError: a bad config or data, a checkpoint that cannot be resumed, or a NaN or infinite loss
            (the message names the step and the last good checkpoint).
        Stopped: SIGINT or SIGTERM (``advkit.runtime.signals``; exit code 130 / 143) in a single-process run,
            raised between two steps once ``last.ckpt`` holds the step reached (``--resume`` goes on from it).
    """
    device = resolve_device(cfg.device)
    d = init_distributed(device.type)
    if d.enabled and device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    seed_everything(cfg.seed)
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        with deterministic(cfg.deterministic):
            return _GanRun(cfg, out_dir, device=device, resume=resume, dist_=d, profile=profile,
                           probe=probe).run(progress=progress, on_epoch=on_epoch)
    finally:
        torch.set_num_threads(threads)
        shutdown(d)


def build_generator(cfg: GanConfig, img_size: int, channels: int) -> DCGANGenerator:
    """The generator ``cfg.model`` describes, freshly initialised (the trainer's, and a ``last.ckpt``'s shape).

    Args:
        cfg: the GAN config.
        img_size: the images' side.
        channels: the images' channels.

    Returns:
        The generator.
    """
    m = cfg.model
    return DCGANGenerator(z_dim=m.z_dim, img_size=img_size, channels=channels, width=m.g_width,
                          batch_norm=m.g_batch_norm, depth=m.g_depth)


def _set_trainable(net: nn.Module, on: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(on)


def per_sample_d_loss(name: str, real_label: float = 1.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``loss_fn(two_logit_logits, y) -> per-sample D loss`` for GAN loss ``name``, labels REAL=0 / FAKE=1.

    The mean over a real batch plus the mean over a fake batch equals ``d_loss(name, ...)``; it is the loss
    the hardened discriminator's attack maximizes and its training step minimizes.

    Args:
        name: the GAN loss.
        real_label: the real images' target, in (0, 1] (one-sided label smoothing).

    Returns:
        ``loss_fn(logits [B, 2], y [B]) -> [B]`` over ``TwoLogit(D)``'s logits.
    """
    def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d = (logits[:, REAL] - logits[:, FAKE]).float()  # TwoLogit's (d/2, -d/2) -> the raw logit d
        if name in ("minimax", "nonsaturating"):
            real = F.softplus(-d)
            if real_label != 1.0:
                real = real_label * real + (1 - real_label) * F.softplus(d)
            fake = F.softplus(d)
        elif name == "wgan":
            real, fake = -d, d
        elif name == "hinge":
            real, fake = F.relu(1 - d), F.relu(1 + d)
        else:  # lsgan
            real, fake = 0.5 * (d - real_label).pow(2), 0.5 * d.pow(2)
        return torch.where(y == REAL, real, fake)
    return loss_fn


class _Clock:
    """Seconds spent per named part of the loop, summed; a no-op unless on (``train_gan(profile=True)``)."""

    def __init__(self, on: bool):
        self.on = on
        self.parts: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if not self.on:
            yield
            return
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.parts[name] += time.perf_counter() - t0

    def take(self) -> dict[str, float]:
        """The sums since the last call, rounded, and a fresh start."""
        out = {k: round(v, 4) for k, v in self.parts.items()}
        self.parts.clear()
        return out


class _CompiledOrEager:
    """``torch.compile(net)``, or ``net`` itself when compiling fails on the first call (no C++ compiler for
    inductor on the CPU, an unsupported op): one warning, then eager for the rest of the run."""

    def __init__(self, net: nn.Module, name: str):
        self.net, self.name, self.ok = net, name, False
        self.fn: Callable[[torch.Tensor], torch.Tensor] = torch.compile(net)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.ok:
            return self.fn(x)
        try:
            out = self.fn(x)
        except Exception as e:  # only until the first call succeeds: a compile failure, not a training error
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            log.warning("torch.compile of %s failed (%s: %s); it trains eagerly", self.name, type(e).__name__,
                        first[:200])
            self.fn = self.net
            out = self.net(x)
        self.ok = True
        return out


class _GanRun:
    """One training run; its state lives on the instance so the step functions stay short."""

    def __init__(self, cfg: GanConfig, out_dir: str | Path | None, *, device: torch.device, resume: bool = False,
                 dist_: Dist | None = None, profile: bool = False,
                 probe: tuple[int, Callable[[dict], None]] | None = None):
        self.t_start = time.perf_counter()
        self.probe, self.probe_s, self.clock = probe, 0.0, _Clock(profile)
        self.cfg, self.device, self.resume = cfg, device, resume
        self.dist = dist_ or Dist()
        if cfg.batch_size % self.dist.world:
            raise AdvkitError(f"batch_size {cfg.batch_size} (the global batch) must be divisible by the "
                              f"{self.dist.world} processes")
        self.folder = RunFolder(out_dir, main=self.dist.main)
        c = cfg
        self.train = load_dataset(c.data.dataset, "train", root=c.data.root,
                                  download=c.data.download).subset(c.data.train_limit)
        ch, h, w = self.train.image_shape
        if h != w:
            raise AdvkitError(f"{self.train.name}: square images expected, got {h}x{w}")
        self.steps_per_epoch = len(self.train) // c.batch_size
        if self.steps_per_epoch == 0:
            raise AdvkitError(f"{len(self.train)} training images are fewer than one batch of {c.batch_size}")
        self.G = build_generator(c, h, ch).to(device)
        self.D = DCGANDiscriminator(img_size=h, channels=ch, width=c.model.d_width,
                                    spectral_norm=c.model.spectral_norm, critic=c.critic,
                                    depth=c.model.d_depth).to(device)
        self.memory_format = torch.channels_last if c.channels_last else torch.contiguous_format
        if c.channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        # the training passes of G and D (compiled with `compile: true`); other uses call the nets themselves
        self.g_fn: Callable[[torch.Tensor], torch.Tensor] = _CompiledOrEager(self.G, "G") if c.compile else self.G
        self.d_fn: Callable[[torch.Tensor], torch.Tensor] = _CompiledOrEager(self.D, "D") if c.compile else self.D
        self.G_ema = None
        if c.ema_g > 0:
            self.G_ema = copy.deepcopy(self.G).eval()
            _set_trainable(self.G_ema, False)
        self.betas = (c.betas[0], c.betas[1])  # the config checked that there are two
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=c.lr_g, betas=self.betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=c.lr_d, betas=self.betas)
        self.shuffle_gen = torch.Generator().manual_seed(c.seed)
        self.noise_gen = torch.Generator(device=device).manual_seed(c.seed + 1)
        self.fixed_z = torch.randn(c.grid_n, c.model.z_dim, generator=torch.Generator().manual_seed(c.seed + 2))
        self.hardened = None
        if c.harden.objective != "none":
            from advkit.train.objectives import get_objective

            hd = c.harden
            self.hardened = get_objective(hd.objective, eps=hd.eps, alpha=hd.alpha, steps=hd.steps,
                                          loss_fn=per_sample_d_loss(c.d_loss_name, c.real_label))
        self.heldout = None
        if c.dg.every:
            test = load_dataset(c.data.dataset, "test", root=c.data.root, download=c.data.download)
            self.heldout = test.subset(c.dg.n).tensors()[0]
        self.cfg_dict = to_dict(c)
        self.epoch, self.d_steps, self.g_steps, self.it = 0, 0, 0, 0
        self.curves: dict[str, list[float]] = {"d_loss": [], "g_loss": []}
        self.last_dg: dict | None = None
        self.dg_curve: list[float] = []          # every duality-gap estimate, in order
        self.best_dg: dict | None = None         # the lowest estimate so far: {"dg", "g_step", "epoch"}
        self._best_nets: tuple[dict, dict] | None = None  # its (G, D) states, written at the epoch's end
        self.mid: dict | None = None  # where a checkpoint written inside an epoch (on SIGINT/SIGTERM) stopped
        self._fake: torch.Tensor | None = None  # reuse_fake: D's generated batch, with G's graph, for G's step
        self.stop = StopFlag()

    # ------------------------------------------------------------------ checkpoints

    def _generators(self) -> dict[str, torch.Generator]:
        """The run's random streams by their names in ``last.ckpt``."""
        return {"shuffle_rng": self.shuffle_gen, "noise_rng": self.noise_gen}

    def _state(self) -> dict:
        """What ``last.ckpt`` holds at the end of an epoch: enough to go on as if never stopped."""
        return {"config": self.cfg_dict, "epoch": self.epoch, "G": cpu_state(self.G), "D": cpu_state(self.D),
                "G_ema": cpu_state(self.G_ema) if self.G_ema is not None else None,
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                **rng_state(self._generators()), "d_steps": self.d_steps, "g_steps": self.g_steps,
                "it": self.it, "metrics_lines": list(self.folder.lines),
                "curves": {k: list(v) for k, v in self.curves.items()}, "last_dg": self.last_dg,
                "dg_curve": list(self.dg_curve), "best_dg": self.best_dg}

    def _restore(self) -> None:
        st = self.folder.resume(self.cfg_dict, kind="GAN", needs=("G", "D"), allowed=RESUMABLE_CHANGES)
        self.G.load_state_dict(st["G"])
        self.D.load_state_dict(st["D"])
        if self.G_ema is not None:
            self.G_ema.load_state_dict(st["G_ema"])
        self.opt_g.load_state_dict(st["opt_g"])
        self.opt_d.load_state_dict(st["opt_d"])
        restore_rng(st, self._generators())
        self.epoch, self.d_steps, self.g_steps, self.it = st["epoch"], st["d_steps"], st["g_steps"], st["it"]
        self.curves = {k: list(v) for k, v in st["curves"].items()}
        self.last_dg = st["last_dg"]
        self.dg_curve = list(st.get("dg_curve", []))
        self.best_dg = st.get("best_dg")
        self.mid = st.get(MID_EPOCH)

    # ------------------------------------------------------------------ steps

    def _z(self, n: int) -> torch.Tensor:
        """This process's ``n`` rows of a global draw of ``n * world`` latent vectors (every process draws
        the same numbers, so the noise stream stays in step and the union over processes is one draw)."""
        z = torch.randn(n * self.dist.world, self.cfg.model.z_dim, generator=self.noise_gen, device=self.device)
        return z[self.dist.rank::self.dist.world] if self.dist.enabled else z

    def _average_grads(self, net: nn.Module) -> None:
        """Average ``net``'s gradients over processes (one flat all-reduce); a no-op in a single process."""
        if not self.dist.enabled:
            return
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.dist.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def _mean(self, values: list[float]) -> list[float]:
        """The mean over processes of a few per-process numbers (equal shares of every batch)."""
        if not self.dist.enabled:
            return values
        return [v / self.dist.world for v in self.dist.all_sum(values, self.device)]

    def _check(self, value: torch.Tensor, what: str, batch: int) -> float:
        """``value`` averaged over processes (so every process stops together on a NaN) as a float."""
        v = self._mean([value.item()])[0]
        if not math.isfinite(v):
            if self.folder.out is not None and self.epoch >= 1:
                good = f"the last good checkpoint is {self.folder.checkpoint} (end of epoch {self.epoch})"
            else:
                good = "no checkpoint was written yet (it diverged in the first epoch)"
            raise AdvkitError(f"training diverged at step {self.it} (epoch {self.epoch + 1}, batch {batch}): "
                              f"{what} is {v}; {good}; lower the learning rates or change the loss")
        return v

    def _d_step(self, x: torch.Tensor, batch: int, keep: bool = False) -> tuple[float, float, float, float | None]:
        """One D step on real ``x`` and a fresh generated batch; ``keep``: G makes that batch with its graph and
        ``self._fake`` holds it for the G step that follows (``reuse_fake``)."""
        c = self.cfg
        _set_trainable(self.G, keep)
        _set_trainable(self.D, True)
        z = self._z(len(x))
        # the dg objective: D's gradient of DG is -grad_D V(G*, D), G* the worst-case generator against D
        g_play = self._worst_g(len(x)) if c.loss == "dg" else self.g_fn
        with self.clock("d.g_forward"), torch.set_grad_enabled(keep):
            kept = g_play(z)
            fake = kept.detach()
        self._fake = kept if keep else None
        with self.clock("checks"):
            self._check(fake.sum(), "a generated image", batch)
        if self.hardened is not None:
            tl = TwoLogit(self.D)
            y_real = torch.full((len(x),), REAL, dtype=torch.int64, device=self.device)
            y_fake = torch.full((len(x),), FAKE, dtype=torch.int64, device=self.device)
            l_real, lg_real = self.hardened(tl, x, y_real, attack_model=tl, generator=self.noise_gen)
            l_fake, lg_fake = self.hardened(tl, fake, y_fake, attack_model=tl, generator=self.noise_gen)
            loss = l_real + l_fake
            d_real, d_fake = lg_real[:, REAL] - lg_real[:, FAKE], lg_fake[:, REAL] - lg_fake[:, FAKE]
        else:
            with self.clock("d.forward"):
                d_real, d_fake = self.d_fn(x), self.d_fn(fake)
                loss = losses.d_loss(c.d_loss_name, d_real, d_fake, real_label=c.real_label)
        gp = None
        if c.loss == "wgan" and c.gp_weight > 0:
            gp_t = losses.gradient_penalty(self.D, x, fake, generator=self.noise_gen)
            loss = loss + c.gp_weight * gp_t
            gp = self._check(gp_t, "the gradient penalty", batch)
        with self.clock("checks"):
            value = self._check(loss, "the discriminator loss", batch)
        with self.clock("d.backward"):
            self.opt_d.zero_grad(set_to_none=True)
            loss.backward()
            self._average_grads(self.D)
        with self.clock("d.optimizer"):
            self.opt_d.step()
        self.d_steps += 1
        with self.clock("checks"), torch.no_grad():
            real_acc, fake_acc = self._mean([(d_real > 0).float().mean().item(), (d_fake < 0).float().mean().item()])
        return value, real_acc, fake_acc, gp

    def _g_turn(self, d_steps: int) -> bool:
        """Whether a G step follows the ``d_steps``-th D step (after ``d_warmup``, every ``n_critic``-th)."""
        c = self.cfg
        return d_steps > c.d_warmup and (d_steps - c.d_warmup) % c.n_critic == 0

    def _g_step(self, batch_size: int, batch: int) -> float:
        c = self.cfg
        _set_trainable(self.D, False)
        _set_trainable(self.G, True)
        if c.loss == "dg":  # G's gradient of DG is grad_G V(G, D*), D* the worst-case discriminator against G
            d_play = self._worst_d(batch_size)
            z = self._z(batch_size)
            # V's generator term through its non-saturating form: same fixed points, usable gradients early on
            loss = losses.g_loss("nonsaturating", d_play(self.G(z)))
        else:
            fake, self._fake = self._fake, None
            with self.clock("g.forward"):
                if fake is None:
                    fake = self.g_fn(self._z(batch_size))
                loss = losses.g_loss(c.loss, self.d_fn(fake))
        with self.clock("checks"):
            value = self._check(loss, "the generator loss", batch)
        with self.clock("g.backward"):
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self._average_grads(self.G)
        with self.clock("g.optimizer"):
            self.opt_g.step()
        self.g_steps += 1
        if self.G_ema is not None and self.g_steps % c.ema_every == 0:
            with self.clock("ema"):
                ema_update(self.G_ema, self.G, c.ema_g ** c.ema_every)
        _set_trainable(self.D, True)
        return value

    # ------------------------------------------------------------------ the duality-gap objective

    def _worst_g(self, batch_size: int) -> nn.Module:
        """A copy of G after ``dg.train_k`` Adam steps minimizing ``V(G', D)`` against the current D (frozen)."""
        c = self.cfg
        g_w = self._scratch("g_w", self.G)
        opt = torch.optim.Adam(g_w.parameters(), lr=c.dg.lr or c.lr_g, betas=self.betas)
        _set_trainable(self.D, False)
        for _ in range(c.dg.train_k):
            z = self._z(batch_size)
            loss = losses.g_loss("nonsaturating", self.D(g_w(z)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            self._average_grads(g_w)
            opt.step()
        _set_trainable(self.D, True)
        _set_trainable(g_w, False)
        return g_w

    def _worst_d(self, batch_size: int) -> nn.Module:
        """A copy of D after ``dg.train_k`` Adam steps maximizing ``V(G, D')`` on the latest real batch."""
        c = self.cfg
        d_w = self._scratch("d_w", self.D)
        opt = torch.optim.Adam(d_w.parameters(), lr=c.dg.lr or c.lr_d, betas=self.betas)
        x = self._last_real[:batch_size]
        for _ in range(c.dg.train_k):
            z = self._z(len(x))
            with torch.no_grad():
                fake = self.G(z)
            loss = losses.d_loss("minimax", d_w(x), d_w(fake))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            self._average_grads(d_w)
            opt.step()
        _set_trainable(d_w, False)
        return d_w

    def _scratch(self, name: str, net: nn.Module) -> nn.Module:
        """A reusable module (built once) reset to ``net``'s current weights and buffers, trainable."""
        w = getattr(self, "_" + name, None)
        if w is None:
            w = copy.deepcopy(net)
            setattr(self, "_" + name, w)
        w.load_state_dict(net.state_dict())
        w.train()
        _set_trainable(w, True)
        return w

    def _duality_gap(self) -> dict:
        c = self.cfg
        gen = torch.Generator(device=self.device).manual_seed(c.seed + 1000 + self.g_steps)  # training RNG untouched
        if self.heldout is None:  # loaded exactly when dg.every is set, the only way here
            raise RuntimeError("the duality gap needs held-out images (dg.every)")
        res = duality_gap(self.G, self.D, self.heldout, k=c.dg.k, lr=c.dg.lr or c.lr_d, batch_size=c.batch_size,
                          generator=gen, betas=self.betas)
        return {**res, "g_step": self.g_steps}

    def _on_duality_gap(self, res: dict, epoch: int) -> None:
        """Log an estimate; keep the players with the lowest gap so far (the checkpoint the gap picks)."""
        self.last_dg = res
        self.dg_curve.append(res["dg"])
        if self.best_dg is None or res["dg"] < self.best_dg["dg"]:
            self.best_dg = {"dg": res["dg"], "g_step": res["g_step"], "epoch": epoch}
            self._best_nets = (cpu_state(self.sampler), cpu_state(self.D))

    def _write_best(self, out: Path) -> None:
        """``generator_best_dg.safetensors`` (+ D) in ``out`` for a new lowest duality gap found this epoch."""
        if self._best_nets is None or self.best_dg is None:  # (both are set together)
            return
        g, d = copy.deepcopy(self.sampler).cpu(), copy.deepcopy(self.D).cpu()
        g.load_state_dict(self._best_nets[0])
        d.load_state_dict(self._best_nets[1])
        meta = {"dataset": self.cfg.data.dataset, "input_shape": list(self.train.image_shape),
                "config": self.cfg_dict, "selected_by": "lowest duality gap", **{f"best_{k}": v
                                                                                for k, v in self.best_dg.items()}}
        save_gan_net(g, out / "generator_best_dg.safetensors", "generator", ema=self.G_ema is not None, **meta)
        save_gan_net(d, out / "discriminator_best_dg.safetensors", "discriminator", **meta)
        self._best_nets = None

    # ------------------------------------------------------------------ outputs

    def _probe(self, epoch: int) -> None:
        """``probe``'s callback on rank 0 (its time kept off the training clock)."""
        if self.probe is None or not self.dist.main:
            return
        t0 = time.perf_counter()
        g = self.sampler
        was = g.training
        g.eval()
        self.probe[1]({"epoch": epoch, "g_steps": self.g_steps, "generator": g,
                       "raw_generator": self.G if self.G_ema is not None else None,
                       "train_s": round(t0 - self.t_start - self.probe_s, 3)})
        g.train(was)
        self.G.train()
        self.probe_s += time.perf_counter() - t0

    @property
    def sampler(self) -> DCGANGenerator:
        return self.G_ema if self.G_ema is not None else self.G

    def _write_samples(self, epoch: int, out: Path) -> None:
        g = self.sampler
        was = g.training
        g.eval()
        with torch.no_grad():
            x = torch.cat([g(z.to(self.device)) for z in self.fixed_z.split(256)])
        g.train(was)
        atomic_write_bytes(out / f"samples_epoch{epoch:03d}.png",
                           sample_grid_png(x, f"epoch {epoch}, {self.cfg.loss} loss"))

    def _meta(self, metrics: dict) -> dict:
        return {"dataset": self.cfg.data.dataset, "input_shape": list(self.train.image_shape),
                "config": self.cfg_dict, "metrics": metrics}

    def _set_lr(self) -> None:
        """Both players' learning rates for the batch after ``self.it`` batches (a pure function of the
        batch count, so a resumed run follows the same schedule)."""
        c = self.cfg
        if c.lr_decay == "none":
            return
        left = 1 - self.it / (c.epochs * self.steps_per_epoch)  # linear: 1 on the first batch, 1/N on the last
        for opt, lr in ((self.opt_g, c.lr_g), (self.opt_d, c.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * left

    # ------------------------------------------------------------------ the loop

    def run(self, *, progress: bool = False,
            on_epoch: Callable[[dict], None] | None = None) -> tuple[DCGANGenerator, dict]:
        c, main = self.cfg, self.dist.main
        if self.folder.resuming(self.resume):
            self._restore()
        self.folder.write_config(c)
        metrics = self.folder.last_metrics
        self.G.train()
        self.D.train()
        # SIGINT/SIGTERM stop the run between two steps, after a resumable last.ckpt (one process only: under
        # torchrun the ranks could not agree on the step)
        with graceful(enabled=not self.dist.enabled) as self.stop:
            for epoch in range(self.epoch + 1, c.epochs + 1):
                metrics = self._train_epoch(epoch, progress=progress)
                self.folder.append_metrics(metrics)
                self.epoch = epoch
                if self.folder.writes and self.folder.out is not None:  # (writes implies a folder)
                    self._write_epoch(epoch, self.folder.out)
                if main:
                    log.info("epoch %d: %s", epoch, json.dumps(metrics))
                    if on_epoch is not None:
                        on_epoch(metrics)
                if self.stop.requested and epoch < c.epochs:  # came during the epoch's writes: last.ckpt is
                    self.stop.stop()                           # this epoch's, written just now
        if self.probe is not None and self.g_steps % self.probe[0]:  # the last generator is always probed
            self._probe(self.epoch)
        _set_trainable(self.G, True)
        _set_trainable(self.D, True)
        final = self.sampler
        if self.folder.writes and self.folder.out is not None:
            with self.clock("end.final_save"):
                meta = self._meta(metrics)
                save_gan_net(final, self.folder.out / "generator.safetensors", "generator",
                             ema=self.G_ema is not None, **meta)
                save_gan_net(self.D, self.folder.out / "discriminator.safetensors", "discriminator", **meta)
        if self.clock.on:  # the last epoch's writes (earlier epochs' are in the next epoch's profile_s)
            metrics = {**metrics, "profile_end_s": self.clock.take()}
        self.D.eval()
        self.dist.barrier()  # no process leaves the group while rank 0 still writes
        return final.eval(), metrics

    def _train_epoch(self, epoch: int, *, progress: bool) -> dict:
        """One pass over the training images (D steps, and G steps on the critic schedule); returns the
        epoch's metrics."""
        c = self.cfg
        t0, probe_s0 = time.perf_counter(), self.probe_s
        d_sum = g_sum = gp_sum = real_acc = fake_acc = 0.0
        n_d = n_g = 0
        mid, self.mid = self.mid, None
        epoch_rng = epoch_order_state(self.shuffle_gen, mid)
        raw = self.train.batches(c.batch_size, shuffle=True, generator=self.shuffle_gen, drop_last=True)
        step = skip_done_steps(raw, self.shuffle_gen, mid)
        if mid is not None:  # the epoch's sums, counts, clock and pending best pair go on
            d_sum, g_sum, gp_sum, real_acc, fake_acc = mid["sums"]
            n_d, n_g = mid["counts"]
            t0 -= mid["time_s"]
            if mid.get("best_nets") is not None:  # a new lowest gap of this epoch, not written yet
                self._best_nets = (mid["best_nets"][0], mid["best_nets"][1])
        bar = progress_bar(raw, total=self.steps_per_epoch - step, desc=f"epoch {epoch}/{c.epochs}",
                           show=progress and self.dist.main)
        batches = iter(bar)
        for b in range(step + 1, self.steps_per_epoch + 1):
            with self.clock("data"):
                x = next(batches)[0]
                if self.dist.enabled:  # this process's share of the global batch
                    x = x[self.dist.rank::self.dist.world]
                x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            self._set_lr()
            self.it += 1
            self._last_real = x
            g_next = self._g_turn(self.d_steps + 1)
            dl, ra, fa, gp = self._d_step(x, b, keep=c.reuse_fake and g_next)
            d_sum, real_acc, fake_acc, n_d = d_sum + dl, real_acc + ra, fake_acc + fa, n_d + 1
            self.curves["d_loss"].append(dl)
            if gp is not None:
                gp_sum += gp
            if g_next:
                gl = self._g_step(len(x), b)
                g_sum, n_g = g_sum + gl, n_g + 1
                self.curves["g_loss"].append(gl)
                if c.dg.every and self.g_steps % c.dg.every == 0 and self.dist.main:  # a monitor: rank 0's view
                    with self.clock("dg_monitor"):
                        self._on_duality_gap(self._duality_gap(), epoch)
                if self.probe is not None and self.g_steps % self.probe[0] == 0:
                    self._probe(epoch)
            with self.clock("logging"):
                bar.set_postfix(d=f"{d_sum / n_d:.3f}", g=f"{g_sum / n_g:.3f}" if n_g else "-")
            faults.point(f"step:{self.it}")  # the fault tests kill here (ADVKIT_FAULT=kill@step:N)
            if self.stop.requested:
                bar.close()
                self._save_mid_epoch(epoch, b, epoch_rng, sums=[d_sum, g_sum, gp_sum, real_acc, fake_acc],
                                     counts=[n_d, n_g], time_s=time.perf_counter() - t0 - (self.probe_s - probe_s0))
                self.stop.stop()
        bar.close()
        metrics: dict[str, Any] = {"epoch": epoch, "d_loss": d_sum / max(n_d, 1),
                                   "g_loss": g_sum / n_g if n_g else None,
                   "d_real_acc": real_acc / max(n_d, 1), "d_fake_acc": fake_acc / max(n_d, 1),
                   "gp": gp_sum / max(n_d, 1) if c.loss == "wgan" and c.gp_weight > 0 else None,
                   "d_steps": self.d_steps, "g_steps": self.g_steps,
                   "time_s": round(time.perf_counter() - t0 - (self.probe_s - probe_s0), 3)}
        if self.clock.on:  # this epoch's steps; the epoch-end writes are in the next epoch's (or the run's end)
            metrics["profile_s"] = {**self.clock.take(), "threads": torch.get_num_threads()}
        if self.last_dg is not None and self.best_dg is not None:  # (both are set by the first estimate)
            metrics.update(dg=self.last_dg["dg"], dg_g_step=self.last_dg["g_step"],
                           dg_v_worst_d=self.last_dg["v_worst_d"], dg_v_worst_g=self.last_dg["v_worst_g"],
                           best_dg=self.best_dg["dg"], best_dg_g_step=self.best_dg["g_step"])
        return metrics

    def _save_mid_epoch(self, epoch: int, step: int, epoch_rng: torch.Tensor, *, sums: list[float],
                        counts: list[int], time_s: float) -> None:
        """``last.ckpt`` after ``step`` steps of ``epoch``: what a resumed run needs to take the next step as an
        uninterrupted run would (the epoch's first shuffle state re-draws its order; the metric sums go on; a
        best-gap pair found this epoch and not yet written travels with it)."""
        if not self.folder.writes:
            return
        state = self._state()  # self.epoch is still the last finished epoch
        best = list(self._best_nets) if self._best_nets is not None else None
        state[MID_EPOCH] = {"step": step, "sums": sums, "counts": counts, "time_s": time_s,
                            "epoch_shuffle_rng": epoch_rng, "shuffle_rng": self.shuffle_gen.get_state(),
                            "best_nets": best}
        self.folder.save_checkpoint(state)
        log.warning("stopped in epoch %d after step %d: %s can resume from here", epoch, step,
                    self.folder.checkpoint)

    def _write_epoch(self, epoch: int, out: Path) -> None:
        """Rank 0's files in ``out`` after an epoch: the sample grid, the curves, a new best-gap pair and
        ``last.ckpt``."""
        c = self.cfg
        if c.sample_every and (epoch % c.sample_every == 0 or epoch == c.epochs):
            with self.clock("end.sample_grid"):
                self._write_samples(epoch, out)
        with self.clock("end.curves"):
            atomic_write_bytes(out / "losses.png", loss_curves_png(self.curves))
            if self.dg_curve:
                atomic_write_bytes(out / "dg.png", loss_curves_png(
                    {"dg": self.dg_curve}, title=f"duality gap, every {c.dg.every} G steps"))
        with self.clock("end.checkpoint"):
            self._write_best(out)
            self.folder.save_checkpoint(self._state())
