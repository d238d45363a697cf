"""A full disk (``OSError(ENOSPC)`` from the one write primitive, advkit.runtime.io.write_all) during every kind
of output write: the previous file stays as it was, no temp file is left, and the CLI says so in one line with
exit code 2. Kinds: checkpoints (last.ckpt, model.safetensors), metrics.jsonl, config.yaml, the reports (json,
html, md, junit), npz, PNG grids and samples, the detect CSV."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from test_report import make_report

import advkit.runtime.io as rio
from advkit.detect.infer import DetectResult, write_result
from advkit.report import write_reports
from conftest import one_error_line, run_cli

REPO = Path(__file__).resolve().parents[2]
DATA = str(REPO / "datasets")
TRAIN = ["data.train_limit=256", "data.test_limit=64", "eval.n=32", "eval.steps=2", "batch_size=64",
         "model.name=small_cnn", "tensorboard=false", f"data.root={DATA}", "epochs=2", "device=cpu"]


class Full:
    """Makes the write of the file named ``name`` (its ``nth`` write, from 1) fail as on a full disk."""

    def __init__(self, monkeypatch, name: str, nth: int = 1):
        self.name, self.nth, self.seen = name, nth, 0
        monkeypatch.setattr(rio, "write_all", self)

    def __call__(self, f, data: bytes, path: Path) -> None:
        if path.name == self.name:
            self.seen += 1
            if self.seen == self.nth:
                f.write(data[: len(data) // 2])  # half of it made it to the disk
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        f.write(data)


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _no_temps(folder: Path) -> None:
    assert not [p for p in folder.rglob("*.tmp")], "a temp file was left behind"


def _full_disk_line(err: str, name: str) -> None:
    line = one_error_line(err)
    assert "No space left on device" in line and name in line, line


@pytest.mark.parametrize("name,nth", [("last.ckpt", 2), ("model.safetensors", 1),
                                      pytest.param("metrics.jsonl", 2, marks=pytest.mark.slow),
                                      pytest.param("config.yaml", 1, marks=pytest.mark.slow)])
def test_training_keeps_the_previous_file(name, nth, tmp_path, monkeypatch, capsys, one_thread):
    out = tmp_path / "run"
    if nth == 1:  # the file exists from an earlier run: a rerun into the same folder fails writing it
        out.mkdir()
        (out / name).write_bytes(b"the previous run's file\n")
    Full(monkeypatch, name, nth)
    before = (out / name).read_bytes() if (out / name).exists() else None
    code, _, err = run_cli(capsys, "train", "classifier", *[a for s in TRAIN for a in ("--set", s)],
                           "--out", out)
    assert code == 2
    _full_disk_line(err, name)
    _no_temps(out)
    if before is not None:
        assert (out / name).read_bytes() == before
    if name == "last.ckpt":  # the epoch-1 checkpoint is still there, whole, and resumable
        assert torch.load(out / name, weights_only=True)["epoch"] == 1
    if name == "metrics.jsonl":
        lines = [json.loads(line) for line in (out / name).read_text().splitlines()]
        assert [m["epoch"] for m in lines] == [1]  # epoch 1's file, whole


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    out = tmp_path_factory.mktemp("attack") / "run"
    from advkit.cli import main

    try:
        main(["attack", "--fgsm", "--model", "small_cnn", "-n", "8", "--device", "cpu", "--data-root", DATA,
              "--out", str(out), "--eps", "0.1"])
    except SystemExit as e:
        assert e.code == 0
    assert (out / "summary.json").is_file()
    return out


@pytest.mark.parametrize("name", ["adversarial.npz", "grid_eps0.1.png", "summary.json"])
def test_attack_outputs_keep_the_previous_file(name, attacked, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    out.mkdir()
    for p in attacked.iterdir():
        (out / p.name).write_bytes(p.read_bytes())
    before = _digests(out)
    Full(monkeypatch, name)
    code, _, err = run_cli(capsys, "attack", "--fgsm", "--model", "small_cnn", "-n", "8", "--device", "cpu",
                           "--data-root", DATA, "--out", out, "--eps", "0.1")
    assert code == 2
    _full_disk_line(err, name)
    _no_temps(out)
    assert _digests(out)[name] == before[name]


@pytest.mark.parametrize("name", ["report.md", "report.html", "junit.xml", "report.json"])
def test_reports_keep_the_previous_file(name, tmp_path, monkeypatch):
    write_reports(make_report(), tmp_path)
    before = _digests(tmp_path)
    changed = make_report()
    changed["models"][0]["name"] = "renamed"
    Full(monkeypatch, name)
    with pytest.raises(OSError) as e:
        write_reports(changed, tmp_path)
    assert e.value.errno == errno.ENOSPC
    _no_temps(tmp_path)
    assert _digests(tmp_path)[name] == before[name]
    assert _digests(tmp_path)["report.json"] == before["report.json"]  # written last: the set stays the old one


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_detect_result_keeps_the_previous_file(suffix, tmp_path, monkeypatch):
    path = tmp_path / f"scores{suffix}"
    row = {"path": "a.png", "kind": "image", "frame": None, "score_fake": 0.25, "label": "real",
           "resized_from": None, "face_box": None, "error": None}
    write_result(DetectResult(rows=[row], summary={"n": 1}), path)
    before = path.read_bytes()
    Full(monkeypatch, path.name)
    with pytest.raises(OSError):
        write_result(DetectResult(rows=[row, {**row, "path": "b.png"}], summary={"n": 2}), path)
    assert path.read_bytes() == before
    _no_temps(tmp_path)


def test_gan_samples_and_checkpoint_keep_the_previous_files(tmp_path, monkeypatch, capsys, one_thread):
    sets = ["model.z_dim=8", "model.g_width=4", "model.d_width=4", "data.train_limit=64", "batch_size=32",
            "grid_n=4", "device=cpu", f"data.root={DATA}", "epochs=2", "sample_every=1"]
    out = tmp_path / "gan"
    Full(monkeypatch, "samples_epoch002.png")
    code, _, err = run_cli(capsys, "train", "gan", *[a for s in sets for a in ("--set", s)], "--out", out)
    assert code == 2
    _full_disk_line(err, "samples_epoch002.png")
    _no_temps(out)
    assert not (out / "samples_epoch002.png").exists()
    assert (out / "samples_epoch001.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert torch.load(out / "last.ckpt", weights_only=True)["epoch"] == 1  # epoch 2's was not written yet
