"""``advkit train gan`` (train a DCGAN) and ``advkit generate`` (sample a trained generator to files)."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import click
import numpy as np

from advkit.cli._common import default_out, hold_out
from advkit.errors import AdvkitError


@click.command("gan")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              help="YAML config (a diff over the defaults), e.g. configs/gan/dcgan_mnist.yaml.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. --set lr_d=4e-4.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default advkit_runs/gan-TIME).")
@click.option("--data-root", help="Where named datasets are (else $ADVKIT_DATA, else ./datasets).")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.ckpt (written atomically every epoch).")
def gan_cmd(config_path, sets, out, data_root, resume):
    """Train a DCGAN; writes OUT/generator.safetensors and discriminator.safetensors (+ .json), sample
    grids per epoch, metrics.jsonl, losses.png, config.yaml and the resume checkpoint last.ckpt.

    Under `torchrun --nproc_per_node=N` each process takes 1/N of every batch and gradients are averaged;
    only rank 0 prints and writes. batch_size is the global batch."""
    import dataclasses

    from advkit.config import load_config
    from advkit.gan.config import GanConfig
    from advkit.gan.trainer import train_gan
    from advkit.runtime.distributed import is_main_process

    cfg = load_config(GanConfig, config_path, sets)
    if data_root:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=data_root))
    if resume and not out:
        raise AdvkitError("--resume needs --out DIR (the run to continue)")
    out_dir = hold_out(out if out else default_out("gan"))
    extra = f", hardened D ({cfg.harden.objective}, eps {cfg.harden.eps:g})" if cfg.harden.objective != "none" else ""
    echo = click.echo if is_main_process() else (lambda *a, **k: None)
    echo(f"training a DCGAN on {cfg.data.dataset} ({cfg.loss} loss{extra}, {cfg.epochs} epochs) -> {out_dir}")
    _, metrics = train_gan(cfg, out_dir, progress=True, resume=resume, on_epoch=_print_epoch)
    echo(f"done (epoch {metrics.get('epoch', cfg.epochs)}); generator: {out_dir / 'generator.safetensors'}")


def _print_epoch(m: dict) -> None:
    g = "-" if m.get("g_loss") is None else f"{m['g_loss']:.4f}"
    gp = "" if m.get("gp") is None else f"  gp {m['gp']:.4f}"
    dg = "" if m.get("dg") is None else f"  dg {m['dg']:.4f}"
    click.echo(f"epoch {m['epoch']:>3}  d_loss {m['d_loss']:.4f}  g_loss {g}  D(real) acc {m['d_real_acc']:.2%}"
               f"{gp}{dg}  {m['time_s']:.1f}s")


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (deflated) whose bytes depend only on the arrays: fixed member timestamps, fixed order."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def _write_png_folder(out: Path, images: np.ndarray) -> None:
    """``images`` uint8 NHWC (RGB or gray) -> ``out/000000.png ...``, built in a temp folder then renamed."""
    import cv2

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AdvkitError(f"{out} already exists and is not an empty folder; choose a new --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        for i, img in enumerate(images):
            img = img[:, :, 0] if img.shape[2] == 1 else img[:, :, ::-1]  # RGB -> BGR for OpenCV
            ok, buf = cv2.imencode(".png", np.ascontiguousarray(img))
            if not ok:
                raise RuntimeError("OpenCV could not encode a PNG")
            (tmp / f"{i:06d}.png").write_bytes(buf.tobytes())
        os.chmod(tmp, 0o777 & ~_umask())
        os.replace(tmp, out)  # replaces an empty folder too
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


@click.command("generate")
@click.option("--ckpt", required=True, type=click.Path(),
              help="A generator checkpoint (generator.safetensors) or the training run folder holding one.")
@click.option("-n", "n", type=int, required=True, help="Number of images.")
@click.option("--out", required=True, type=click.Path(),
              help="OUT.npz (uint8 images 'x' [N,H,W,C], labels 'y' = 1 'fake'; readable as npz:OUT.npz) "
                   "or a folder (a name without an extension) for 000000.png ...")
@click.option("--seed", type=click.IntRange(-(2**63), 2**63 - 1), default=0, show_default=True,
              help="Seed of z: same seed, same images.")
@click.option("--batch-size", type=int, default=500, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def generate(ckpt, n, out, seed, batch_size, device):
    """Sample N images from a trained generator (seeded, batched; the output is written atomically)."""
    import torch
    from tqdm.auto import tqdm

    from advkit.models.checkpoint import load_generator
    from advkit.models.dcgan import FAKE
    from advkit.runtime.device import resolve_device
    from advkit.runtime.io import atomic_write_bytes

    if n < 1:
        raise AdvkitError(f"-n must be >= 1, got {n}")
    if batch_size < 1:
        raise AdvkitError(f"--batch-size must be >= 1, got {batch_size}")
    if Path(out).suffix and Path(out).suffix != ".npz" and not Path(out).is_dir():
        raise AdvkitError(f"--out {out}: name an .npz file or a folder (no extension) for PNGs; "
                          f"{Path(out).suffix!r} is neither")
    out_path = hold_out(out, file=True)
    if out_path.suffix != ".npz" and out_path.exists() and (not out_path.is_dir() or any(out_path.iterdir())):
        raise AdvkitError(f"{out_path} already exists and is not an empty folder; choose a new --out")
    ckpt_path = Path(ckpt)
    if ckpt_path.is_dir():
        ckpt_path = ckpt_path / "generator.safetensors"
    dev = resolve_device(device)
    g = load_generator(ckpt_path, device=dev)
    gen = torch.Generator().manual_seed(seed)  # z on the CPU: the same z whatever the device
    chunks = []
    with torch.no_grad():
        for s in tqdm(range(0, n, batch_size), desc="generating", unit="batch", leave=False,
                      disable=None):
            z = torch.randn(min(batch_size, n - s), g.z_dim, generator=gen)
            x = g(z.to(dev)).float().clamp_(0, 1)
            chunks.append((x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    images = np.concatenate(chunks)
    if out_path.suffix == ".npz":
        atomic_write_bytes(out_path, _npz_bytes({"x": images, "y": np.full(n, FAKE, np.int64),
                                                 "class_names": np.array(["real", "fake"])}))
    else:
        _write_png_folder(out_path, images)
    h, w, c = images.shape[1:]
    click.echo(f"wrote {n} images ({h}x{w}x{c}, seed {seed}) from {ckpt_path} -> {out_path}")
