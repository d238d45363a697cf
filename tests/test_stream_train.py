"""``advkit train classifier`` on streamed data (imagefolder:, csv:): the training set is decoded batch by batch in
DataLoader workers, never read whole, and trains the weights an in-memory run of the same images trains, bit for
bit; a SIGTERM inside an epoch resumes exactly; unreadable files are fatal with their list, or skipped."""

from __future__ import annotations

import dataclasses
import signal

import cv2
import numpy as np
import pytest
import torch

from advkit.config import load_config
from advkit.data import StreamDataset, open_dataset
from advkit.data.stream import spread
from advkit.errors import AdvkitError
from advkit.train import TrainConfig, train_classifier
from conftest import one_error_line, run_cli

CLASSES = ("ant", "bee", "cow")
N_TRAIN, N_VAL = 10, 4  # per class
# 30 training images, guard 6 of them (fgsm), batches of 8: 3 steps per epoch, the last one of 8 too
TINY = ["model.name=lenet", "model.kwargs={width: 4}", "data.input_size=32", "data.augment=true", "epochs=2",
        "batch_size=8", "eval.n=12", "eval.steps=2", "guard.n=6", "guard.steps=2", "objective.name=fgsm",
        "objective.eps=0.03", "optim.lr=0.01", "device=cpu", "deterministic=true", "tensorboard=false"]


def _png(path, img) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    path.write_bytes(buf.tobytes())


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """``set/{train,val}/<class>/NN.png``: 32 px noise around a per-class colour (learnable, every image distinct)."""
    root = tmp_path_factory.mktemp("stream_train") / "set"
    rng = np.random.default_rng(0)
    for split, n in (("train", N_TRAIN), ("val", N_VAL)):
        for c, name in enumerate(CLASSES):
            for k in range(n):
                base = np.array([60 + 60 * c, 200 - 60 * c, 128], np.int16)
                img = np.clip(base + rng.integers(-50, 51, (32, 32, 3)), 0, 255).astype(np.uint8)
                _png(root / split / name / f"{k:02d}.png", img)
    return root


def _cfg(root, *extra: str) -> TrainConfig:
    return load_config(TrainConfig, None, [*TINY, f"data.dataset=imagefolder:{root}", *extra])


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _no_whole_reads(monkeypatch, bound: int) -> list[int]:
    """``StreamDataset.materialize`` raises on more than ``bound`` files (the guard's and eval's slices are
    at most that); returns the sizes it was called on."""
    calls: list[int] = []
    real = StreamDataset.materialize

    def guarded(self):
        calls.append(len(self))
        if len(self) > bound:
            raise AssertionError(f"materialize() on {len(self)} files: the training set was read whole")
        return real(self)

    monkeypatch.setattr(StreamDataset, "materialize", guarded)
    return calls


@pytest.fixture(scope="module")
def streamed(images, tmp_path_factory, one_thread):
    """A streamed run with 2 decoding workers (the module's reference), and what materialize() was called on."""
    mp = pytest.MonkeyPatch()
    try:
        calls = _no_whole_reads(mp, bound=12)
        out = tmp_path_factory.mktemp("streamed") / "run"
        model, metrics = train_classifier(_cfg(images, "data.num_workers=2"), out)
    finally:
        mp.undo()
    return _state(model), metrics, calls, out


def test_streamed_training_equals_an_in_memory_run_bit_for_bit(images, streamed, one_thread):
    state, metrics, _, _ = streamed
    cfg = _cfg(images)
    train = open_dataset(cfg.data.dataset, "train", input_size=32).materialize()
    test = open_dataset(cfg.data.dataset, "test", input_size=32).materialize()
    assert len(train) == 3 * N_TRAIN and len(test) == 3 * N_VAL  # val/ serves as the test split
    # a streamed run holds out evenly spaced files for the guard (the folder lists them class by class); an
    # in-memory run holds out its last guard.n images: put the same files last
    held = spread(len(train), cfg.guard.n)
    assert set(train.labels[held].tolist()) == set(range(len(CLASSES)))  # every class gives guard images
    rest = torch.tensor([i for i in range(len(train)) if i not in set(held.tolist())])
    order = torch.cat([rest, held])
    train = dataclasses.replace(train, images=train.images[order], labels=train.labels[order])
    model, ref = train_classifier(cfg, None, datasets=(train, test))
    ref_state = _state(model)
    assert state.keys() == ref_state.keys()
    for k in state:
        assert torch.equal(state[k], ref_state[k]), k
    timing = ("epoch_time_s", "eval_time_s")
    assert {k: v for k, v in metrics.items() if k not in timing} == {k: v for k, v in ref.items() if k not in timing}


def test_streamed_training_never_reads_the_training_set_whole(streamed):
    _, metrics, calls, out = streamed
    # only the guard's held-out slice (6 = 30 // 5 of guard.n) and the evaluated test images (eval.n = 12)
    assert sorted(calls) == [6, 12]
    assert metrics["epoch"] == 2 and 0 <= metrics["clean_acc"] <= 1
    assert (out / "model.safetensors").is_file()


def test_a_csv_list_of_the_same_files_trains_the_same_weights(images, streamed, tmp_path, one_thread):
    rows = ["path,label"] + [f"{p},{p.parent.name}" for p in sorted((images / "train").glob("*/*.png"))]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")  # absolute paths; labels are class names
    # csv: one file serves both splits, so the per-epoch test metrics differ; the weights must not
    model, _ = train_classifier(_cfg(images, f"data.dataset=csv:{tmp_path / 'train.csv'}", "data.num_workers=0"),
                                None)
    got = _state(model)
    assert all(torch.equal(got[k], streamed[0][k]) for k in got)


def test_sigterm_inside_a_streamed_epoch_resumes_bit_exactly(images, streamed, tmp_path, monkeypatch, one_thread):
    from advkit.runtime.faults import ENV
    from advkit.runtime.signals import Stopped, exit_on_signals

    state, metrics, _, _ = streamed
    cfg, out = _cfg(images, "data.num_workers=0"), tmp_path / "run"  # (the reference decoded in 2 workers)
    monkeypatch.setenv(ENV, "term@step:5")  # step 2 of epoch 2
    with exit_on_signals():
        with pytest.raises(Stopped) as e:
            train_classifier(cfg, out)
    assert e.value.exit_code == 128 + signal.SIGTERM
    ckpt = torch.load(out / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["mid_epoch"]["step"] == 2
    monkeypatch.delenv(ENV)
    model, resumed = train_classifier(cfg, out, resume=True)
    got = _state(model)
    assert all(torch.equal(got[k], state[k]) for k in state)
    assert resumed["train_loss"] == metrics["train_loss"] and resumed["clean_acc"] == metrics["clean_acc"]


def test_unreadable_training_files_are_fatal_with_their_list_or_skipped(images, tmp_path, capsys, one_thread):
    import shutil

    root = tmp_path / "set"
    shutil.copytree(images, root)
    (root / "train" / "ant" / "00.png").write_bytes(b"not a png")  # in the first class
    (root / "train" / "cow" / "05.png").write_bytes(b"")           # in the last: another batch
    args = ["train", "classifier", "--set", f"data.dataset=imagefolder:{root}", "--set", "objective.name=clean",
            "--set", "epochs=1", "--set", "data.num_workers=0",
            *[a for s in TINY if not s.startswith(("objective", "epochs")) for a in ("--set", s)]]
    code, _, err = run_cli(capsys, *args, "--out", tmp_path / "fatal")
    line = one_error_line(err)
    assert code == 2
    assert "2 unreadable image file(s)" in line and "ant/00.png" in line and "cow/05.png" in line
    assert "--skip-bad" in line
    assert not (tmp_path / "fatal" / "model.safetensors").exists()

    code, out, err = run_cli(capsys, *args, "--out", tmp_path / "skip", "--skip-bad")
    assert code == 0, err
    assert (tmp_path / "skip" / "model.safetensors").is_file()
    assert "final: clean" in out

    with pytest.raises(AdvkitError, match="unreadable"):  # the same from Python, skip_bad off
        train_classifier(_cfg(root, "objective.name=clean", "epochs=1", "data.num_workers=0"), None)


# ---------------------------------------------------------------- train detector: a streamed real pool

def _detector_data(images, tmp_path, **kw):
    from advkit.detect.data import RealFakeConfig

    rng = np.random.default_rng(1)
    fakes = tmp_path / "fakes.npz"  # in-memory fakes beside the streamed reals: one split mixes both
    np.savez(fakes, x=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8))
    return RealFakeConfig(real=f"imagefolder:{images / 'train'}", fakes=(str(fakes),), size=32, debias_jpeg=90,
                          val_frac=0.2, test_frac=0.2, num_workers=0, **kw)


def test_a_streamed_real_pool_gives_the_in_memory_sets(images, tmp_path, one_thread):
    from advkit.detect.data import RealFakeStream, build_realfake

    cfg = _detector_data(images, tmp_path)
    lazy, full = build_realfake(cfg, stream=True), build_realfake(cfg)
    train = lazy["train"]
    assert isinstance(train, RealFakeStream) and len(train) == len(full["train"]) == 36  # 30 reals, 30 fakes: 60%
    x = train.materialize()
    assert torch.equal(x.images, full["train"].images) and torch.equal(train.labels, full["train"].labels)
    assert train.meta["source"] == full["train"].meta["source"]
    for sp in ("val", "test"):  # decoded into memory either way, provenance kept
        assert torch.equal(lazy[sp].images, full[sp].images) and lazy[sp].meta == full[sp].meta
    # the statistics: float64 sums in one pass against the in-memory float32 reduction
    torch.testing.assert_close(torch.tensor(train.mean), torch.tensor(full["train"].mean), rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.tensor(train.std), torch.tensor(full["train"].std), rtol=0, atol=1e-5)
    # and the trainer reads it batch by batch into the weights the in-memory set trains (without normalization:
    # the models would differ by the statistics' last bits)
    tcfg = load_config(TrainConfig, None, ["model.name=lenet", "model.kwargs={width: 4}", "model.normalize=false",
                                           "epochs=1", "batch_size=8", "eval.n=8", "device=cpu", "deterministic=true",
                                           "tensorboard=false"])
    a = _state(train_classifier(tcfg, None, datasets=(train, lazy["val"]))[0])
    b = _state(train_classifier(tcfg, None, datasets=(full["train"], full["val"]))[0])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_detector_streams_its_real_pool_and_lists_bad_files(images, tmp_path, monkeypatch, one_thread):
    import shutil

    import advkit.detect.data as dd
    from advkit.detect.config import DetectorConfig
    from advkit.detect.train import train_detector

    root = tmp_path / "set"
    shutil.copytree(images, root)
    data = _detector_data(root, tmp_path)
    sets = ["train.model.name=lenet", "train.model.kwargs={width: 4}", "train.epochs=1", "train.batch_size=8",
            "train.eval.n=8", "train.device=cpu", "train.tensorboard=false", "evaluation.eps=[0.03]",
            "evaluation.pgd_steps=2", "evaluation.laundering=false"]
    cfg = load_config(DetectorConfig, None, sets)
    cfg = dataclasses.replace(cfg, data=data)
    read_all = dd._read_all

    def no_train_split(ds, per_sample):
        assert ds.name != "realfake:train", "the training split was decoded whole"
        return read_all(ds, per_sample)

    monkeypatch.setattr(dd, "_read_all", no_train_split)
    _, report = train_detector(cfg, tmp_path / "det")
    assert report["data"]["splits"]["train"]["n"] == 36 and 0 <= report["evaluation"]["clean"]["auc"] <= 1
    assert (tmp_path / "det" / "model.safetensors").is_file()

    (root / "train" / "bee" / "03.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(AdvkitError, match=r"1 unreadable image file\(s\): .*bee/03.png"):
        train_detector(cfg, tmp_path / "bad")
    # skipped: the real class holds one image fewer wherever the file was drawn
    _, report = train_detector(dataclasses.replace(cfg, data=dataclasses.replace(data, skip_bad=True)),
                               tmp_path / "skip")
    splits = report["data"]["splits"]
    assert sum(s["real"] for s in splits.values()) == 29 and sum(s["fake"] for s in splits.values()) == 30


@pytest.mark.parametrize("total, n", [(30, 6), (10, 10), (7, 3), (5, 0), (4, 9), (1000, 7)])
def test_spread_takes_evenly_spaced_distinct_positions(total, n):
    pos = spread(total, n).tolist()
    k = min(n, total)
    assert len(pos) == k and len(set(pos)) == k and pos == sorted(pos)
    assert all(0 <= p < total for p in pos)
    if k:
        assert pos[0] == 0
        gaps = [b - a for a, b in zip(pos, pos[1:])]
        assert all(total // k <= g <= -(-total // k) for g in gaps)  # as even as integers allow
