"""SIGKILL a real ``python -m advkit train ...`` at named points (``ADVKIT_FAULT=kill@POINT``, see
advkit/runtime/faults.py), resume it with ``--resume``: the final weights equal an uninterrupted run's bit for
bit on the CPU, every file the killed run left is whole, and no temp file survives the resume.

A fixed sample runs by default (the classifier killed inside its checkpoint write); the whole matrix (three
trainers x four kill points) and ``eval`` killed after its third batch are ``slow``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "datasets"
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# deterministic tiny configs: 7 classifier steps per epoch, 8 GAN steps per epoch
CLF = ["data.train_limit=512", "data.test_limit=128", "eval.n=32", "eval.steps=3", "batch_size=64",
       "model.name=small_cnn", "tensorboard=false", f"data.root={DATA}", "epochs=3", "objective.name=fgsm_rs",
       "objective.eps=0.1", "deterministic=true", "device=cpu", "data.augment=true", "ema=0.9"]
GAN = ["model.z_dim=16", "model.g_width=8", "model.d_width=8", "data.train_limit=256", "batch_size=32",
       "grid_n=16", "device=cpu", "deterministic=true", f"data.root={DATA}", "epochs=2"]
TIMING = {"epoch_time_s", "eval_time_s", "time_s"}
POINTS = ["before_first_ckpt", "mid_write:last.ckpt", "after_epoch:1", "step:10"]
# the default run's sample (one subprocess start costs 5-20 s on a loaded two-core machine); the rest is slow
SAMPLE = {("classifier", "mid_write:last.ckpt")}


def _gens(root: Path) -> list[str]:
    from advkit.gan import DCGANGenerator, save_gan_net

    paths = []
    for seed in (0, 1):
        path = root / f"g{seed}.safetensors"
        if not path.is_file():
            torch.manual_seed(seed)
            save_gan_net(DCGANGenerator(z_dim=8, img_size=28, channels=1, width=4), path, "generator")
        paths.append(str(path))
    return paths


def _argv(kind: str, root: Path) -> list[str]:
    if kind == "classifier":
        sets = CLF
    elif kind == "gan":
        sets = GAN
    else:
        sets = [f"data.fakes=[{','.join(_gens(root))}]", "data.real=mnist", "data.n_per_class=150",
                f"data_root={DATA}", "train.model.name=small_cnn", "train.epochs=2", "train.batch_size=32",
                "train.tensorboard=false", "train.device=cpu", "train.deterministic=true",
                "evaluation.eps=[0.1]", "evaluation.pgd_steps=2", "evaluation.laundering=false",
                "evaluation.n=16"]
    return ["train", kind, *[a for s in sets for a in ("--set", s)]]


def _advkit(*args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **ENV}
    env.pop("ADVKIT_FAULT", None)
    if fault:
        env["ADVKIT_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "advkit", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def _weights(out: Path, kind: str) -> dict[str, torch.Tensor]:
    name = "generator.safetensors" if kind == "gan" else "model.safetensors"
    w = load_file(str(out / name))
    if kind == "gan":
        w.update({f"D.{k}": v for k, v in load_file(str(out / "discriminator.safetensors")).items()})
    return w


def _metrics(out: Path) -> list[dict]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in m.items() if k not in TIMING and not k.startswith("profile")} for m in lines]


def assert_files_whole(out: Path) -> None:
    """Every file a killed run left reads back whole in its own format; only atomic temps may be extra."""
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            continue  # the killed write's temp file: the target beside it is the previous, whole version
        if path.suffix == ".ckpt":
            assert isinstance(torch.load(path, weights_only=True), dict), path
        elif path.suffix == ".safetensors":
            assert load_file(str(path)), path
        elif path.suffix == ".jsonl":
            for line in path.read_text().splitlines():
                json.loads(line)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".yaml":
            yaml.safe_load(path.read_text())
        elif path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.read_bytes()[-8:-4] == b"IEND", path
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                [z[k] for k in z.files]


def reference_run(kind: str, root: Path) -> Path:
    """The uninterrupted run of ``kind`` in ``root`` (the session's, shared with test_signals.py): made on
    first use."""
    out = root / kind
    if not (out / "metrics.jsonl").is_file() or (out / ".advkit.lock").exists() or not any(
            (out / n).is_file() for n in ("model.safetensors", "generator.safetensors")):
        p = _advkit(*_argv(kind, root), "--out", str(out))
        assert p.returncode == 0, p.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """``reference(kind)``: the uninterrupted run's folder."""
    root = tmp_path_factory.getbasetemp() / "fault_refs"
    root.mkdir(exist_ok=True)

    def get(kind: str) -> Path:
        return reference_run(kind, root)

    get.root = root  # type: ignore[attr-defined]
    return get


def _kill_and_resume(kind: str, point: str, reference, tmp_path: Path) -> None:
    ref = reference(kind)
    argv, out = _argv(kind, reference.root), tmp_path / "run"
    p = _advkit(*argv, "--out", str(out), fault=f"kill@{point}")
    assert p.returncode == -signal.SIGKILL, f"the run was not killed at {point}: {p.returncode} {p.stderr[-2000:]}"
    assert not (out / ("generator.safetensors" if kind == "gan" else "model.safetensors")).exists()
    assert_files_whole(out)
    if point == "mid_write:last.ckpt":
        assert list(out.rglob(".last.ckpt.*.tmp")), "the kill did not land inside the checkpoint write"

    p = _advkit(*argv, "--out", str(out), "--resume")
    assert p.returncode == 0, p.stderr[-3000:]
    assert_files_whole(out)
    assert not list(out.rglob(".*.tmp")), "a temp file of the killed run survived the resume"
    wa, wb = _weights(ref, kind), _weights(out, kind)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{kind} killed at {point}: {k} differs from the uninterrupted run"
    assert _metrics(out) == _metrics(ref)


@pytest.mark.parametrize("kind,point", sorted(SAMPLE))
def test_kill_then_resume_matches_uninterrupted_run(kind, point, reference, tmp_path):
    _kill_and_resume(kind, point, reference, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("kind,point", [(k, p) for k in ("classifier", "gan", "detector") for p in POINTS
                                        if (k, p) not in SAMPLE])
def test_kill_matrix(kind, point, reference, tmp_path):
    _kill_and_resume(kind, point, reference, tmp_path)


def _strip_timing(rep: dict) -> dict:
    rep = json.loads(json.dumps(rep))
    for k in ("created", "environment", "timing"):
        rep.pop(k)
    for m in rep["models"]:
        for tm in m["threat_models"]:
            for w in tm["worst_case"]:
                w.pop("time_s"), w.pop("time_saved_s")
            for a in tm["attacks"]:
                for r in a["results"]:
                    r.pop("time_s")
    return rep


@pytest.mark.slow
def test_eval_killed_mid_run_resumes_from_its_finished_batches(reference, tmp_path):
    model = reference("classifier") / "model.safetensors"
    sets = [f"models=[{{name: m, model: {model}}}]", f"data.root={DATA}", "data.n=96", "batch_size=16",
            "device=cpu", "checks.n=16", "checks.pgd_steps=2",
            "threat_models=[{norm: linf, eps: [0.05, 0.1], attacks: [{name: fgsm}, {name: pgd, steps: 3}]}]"]
    argv = ["eval", *[a for s in sets for a in ("--set", s)], "--quiet"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    p = _advkit(*argv, "--out", str(full))
    assert p.returncode == 0, p.stderr[-2000:]
    assert not (full / ".eval_progress").exists()  # removed once the report is written

    p = _advkit(*argv, "--out", str(cut), fault="kill@journal:3")  # after the third of six batches
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert not (cut / "report.json").exists()
    assert len(list((cut / ".eval_progress").glob("*.pt"))) == 3
    # resumed, it computes only the three batches left: a kill at a fourth stored batch never comes
    p = _advkit(*argv, "--out", str(cut), "--resume", fault="kill@journal:4")
    assert p.returncode == 0, p.stderr[-2000:]
    assert not (cut / ".eval_progress").exists()
    a = json.loads((full / "report.json").read_text())
    b = json.loads((cut / "report.json").read_text())
    assert _strip_timing(a) == _strip_timing(b)


def test_journal_takes_back_only_pieces_of_the_same_fingerprint(tmp_path):
    from advkit.runtime.journal import Journal

    folder = tmp_path / ".eval_progress"
    j = Journal(folder, "fp-a", resume=False)
    j.put("model-tm0-b0", {"index": 0, "correct": torch.tensor([True, False])})
    j.put("model-tm0-b1", {"index": 1, "correct": torch.tensor([True])})
    (folder / "model-tm0-b1.pt").write_bytes(b"torn")  # a piece cut short: computed again
    again = Journal(folder, "fp-a", resume=True)
    assert torch.equal(again.get("model-tm0-b0")["correct"], torch.tensor([True, False]))
    assert again.get("model-tm0-b1") is None and again.taken == 1
    assert Journal(folder, "fp-a", resume=False).get("model-tm0-b0") is None  # not resuming: afresh
    Journal(folder, "fp-a", resume=False).put("model-tm0-b0", {"index": 0})
    other = Journal(folder, "fp-b", resume=True)  # another config, model or data
    assert other.get("model-tm0-b0") is None and not list(folder.glob("*.pt"))
    other.close()
    assert not folder.exists()
