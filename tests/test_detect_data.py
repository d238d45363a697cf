"""Fake-image detection, data side and the spectral detector: OpenCV transforms (JPEG, blur, rescale, crops,
augmentation), balanced real-vs-fake sets with provenance and format debiasing, and the frequency detector
(gradients, checkpoints, and a fit that sees a checkerboard no pixel threshold can)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import advkit.models.spectral  # noqa: F401  (registers the "spectral" model)
from advkit.data import load_dataset
from advkit.data import transforms as T
from advkit.detect.data import RealFakeConfig, build_realfake
from advkit.errors import AdvkitError
from advkit.gan import DCGANGenerator, save_gan_net
from advkit.models import create_model, load, save
from conftest import REPO

DATA_ROOT = str(REPO / "datasets")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """64 MNIST test digits, uint8 [64,1,28,28]: natural-ish images with sharp strokes."""
    return load_dataset("mnist", "test", root=DATA_ROOT).images[:64].clone()


def _noise(n: int, c: int = 1, size: int = 32, seed: int = 0) -> torch.Tensor:
    return (torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 256).to(torch.uint8)


def _high_freq_energy(images: torch.Tensor) -> float:
    """Spectral energy beyond a quarter of the sampling rate (the outer ring of the centred spectrum)."""
    x = images.float()
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1)).abs() ** 2
    h, w = x.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
    return power[..., (yy ** 2 + xx ** 2) > (h / 4) ** 2].sum().item()


# --------------------------------------------------------------------------------------------- transforms

def test_jpeg_near_lossless_at_100_and_error_grows_as_quality_drops(digits):
    before = digits.clone()
    errors = {}
    for q in (100, 95, 60, 30):
        out = T.jpeg(digits, q)
        assert out.shape == digits.shape and out.dtype == torch.uint8
        errors[q] = (out.float() - digits.float()).abs().mean().item()
        if q == 100:
            assert (out.int() - digits.int()).abs().max().item() <= 3
    assert errors[30] > errors[60] > errors[95] > errors[100]
    assert errors[30] > 2.0  # quality 30 visibly damages sharp strokes
    assert torch.equal(digits, before)


def test_jpeg_keeps_rgb_channel_order_and_gray():
    img = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    img[:, 0, :, :16] = 220  # left half red, right half blue
    img[:, 2, :, 16:] = 220
    out = T.jpeg(img, 90).float()
    assert out[0, 0, 4:28, 2:12].mean() > 180 and out[0, 2, 4:28, 2:12].mean() < 40
    assert out[0, 2, 4:28, 20:30].mean() > 180 and out[0, 0, 4:28, 20:30].mean() < 40
    gray = T.blur(_noise(2, 1), 1.5)
    rgb = T.jpeg(gray.repeat(1, 3, 1, 1), 95)
    assert (rgb.int().amax(1) - rgb.int().amin(1)).max().item() <= 2  # gray in, (almost) gray out
    assert T.jpeg(gray, 95).shape == (2, 1, 32, 32)


def test_blur_identity_at_zero_and_removes_high_frequencies(digits):
    noise = _noise(8, 3)
    for x in (digits, noise):
        assert torch.equal(T.blur(x, 0), x)
        e0, e1, e2 = (_high_freq_energy(T.blur(x, s)) for s in (0.0, 1.0, 2.0))
        assert e1 < 0.5 * e0 and e2 < 0.5 * e1
    assert T.blur(noise[:, :, :5, :5], 3.0).shape == (8, 3, 5, 5)  # kernel wider than the image


def test_rescale_identity_at_one_and_launders_high_frequencies():
    x = _noise(8, 3)
    assert torch.equal(T.rescale(x, 1.0), x)
    half = T.rescale(x, 0.5)
    assert half.shape == x.shape and half.dtype == torch.uint8
    assert _high_freq_energy(half) < 0.3 * _high_freq_energy(x)
    assert T.rescale(x, 0.01).shape == x.shape  # down to one pixel and back


def test_resize_crop_and_hflip():
    x = _noise(6, 3, 24)
    out = T.resize_crop(x, 16, scale=(0.3, 0.9), rng=0)
    assert out.shape == (6, 3, 16, 16) and out.dtype == torch.uint8
    assert torch.equal(out, T.resize_crop(x, 16, scale=(0.3, 0.9), rng=0))
    assert not torch.equal(out, T.resize_crop(x, 16, scale=(0.3, 0.9), rng=1))
    a = T.resize_crop(x, 16, rng=torch.Generator().manual_seed(5))
    assert torch.equal(a, T.resize_crop(x, 16, rng=torch.Generator().manual_seed(5)))
    # the whole image at aspect 1, resized to its own size, is the image
    assert torch.equal(T.resize_crop(x, None, scale=(1, 1), ratio=(1, 1), rng=3), x)
    assert torch.equal(T.hflip(x), x.flip(-1)) and torch.equal(T.hflip(T.hflip(x)), x)


@pytest.mark.parametrize("chans", [1, 3])
def test_augment_reproducible_and_seed_dependent(chans):
    x = T.blur(_noise(16, chans), 1.0)
    before = x.clone()
    aug = T.Augment(crop_prob=0.5)
    a = aug(x, 0)
    assert a.shape == x.shape and a.dtype == torch.uint8
    assert torch.equal(a, aug(x, 0))
    assert torch.equal(aug(x, torch.Generator().manual_seed(7)), aug(x, torch.Generator().manual_seed(7)))
    assert not torch.equal(a, aug(x, 1))
    assert not torch.equal(a, x)
    assert torch.equal(x, before)
    off = T.Augment(blur_prob=0, jpeg_prob=0, crop_prob=0, flip_prob=0)
    assert torch.equal(off(x, 0), x)
    flips = T.Augment(blur_prob=0, jpeg_prob=0, flip_prob=1)
    assert torch.equal(flips(x, 0), x.flip(-1))


@pytest.mark.parametrize("call, match", [
    (lambda x: T.jpeg(x, 0), "quality"), (lambda x: T.jpeg(x, 101), "quality"),
    (lambda x: T.jpeg(x, 50.5), "quality"), (lambda x: T.jpeg(x, True), "quality"),
    (lambda x: T.blur(x, -0.5), "sigma"), (lambda x: T.blur(x, math.nan), "sigma"),
    (lambda x: T.rescale(x, 0), "factor"), (lambda x: T.rescale(x, 1.5), "factor"),
    (lambda x: T.jpeg(x.float(), 90), "uint8"), (lambda x: T.resize_crop(x, 0, rng=0), "size"),
    (lambda x: T.Augment(blur_prob=1.5), "blur_prob"), (lambda x: T.Augment(jpeg_quality=(20, 101)), "jpeg_quality"),
])
def test_transform_arguments_are_validated(call, match):
    with pytest.raises(AdvkitError, match=match):
        call(_noise(2))


# ------------------------------------------------------------------------------------------ real/fake sets

@pytest.fixture(scope="module")
def files(tmp_path_factory, digits):
    """Small sources on disk: real digits (npz with x, y), noise fakes as `advkit generate` writes them
    (x NHW, y = 1), an RGB 32x32 set, and a tiny generator checkpoint."""
    d = tmp_path_factory.mktemp("realfake")
    real = load_dataset("mnist", "test", root=DATA_ROOT)
    np.savez(d / "real.npz", x=real.images[:120, 0].numpy(), y=real.labels[:120].numpy())
    fake = T.blur(_noise(80, 1, 28, seed=3), 0.7)
    np.savez(d / "fake.npz", x=fake[:, 0].numpy(), y=np.ones(80, np.int64))
    np.savez(d / "few.npz", x=fake[:30, 0].numpy(), y=np.ones(30, np.int64))
    np.savez(d / "rgb.npz", x=_noise(50, 3, 32, seed=4).permute(0, 2, 3, 1).numpy(), y=np.ones(50, np.int64))
    torch.manual_seed(0)
    g = DCGANGenerator(z_dim=8, img_size=28, channels=1, width=4)
    save_gan_net(g, d / "g.safetensors", "generator")
    return d


def _original(spec: str, split: str, index: int) -> torch.Tensor:
    """The image a sample's provenance points to, read back from its source."""
    if spec.endswith(".npz") and not spec.startswith("npz:"):
        return torch.from_numpy(np.load(spec)["x"][index])[None]
    return load_dataset(spec, split, root=DATA_ROOT).images[index]


def _keys(ds) -> list[tuple[str, str, int]]:
    return list(zip(ds.meta["source"], ds.meta["source_split"], ds.meta["source_index"]))


def test_realfake_balanced_disjoint_covering_with_true_provenance(files):
    real, fake = f"npz:{files / 'real.npz'}", str(files / "fake.npz")
    sets = build_realfake(RealFakeConfig(real=real, fakes=(fake,), val_frac=0.1, test_frac=0.2, seed=0))
    sizes = {"train": 56, "val": 8, "test": 16}  # per class: 80 = min(120 real, 80 fake), cut 70/10/20
    keys = []
    for split, ds in sets.items():
        assert ds.classes == ["real", "fake"] and ds.images.dtype == torch.uint8
        assert ds.labels.tolist().count(0) == ds.labels.tolist().count(1) == sizes[split]
        assert ds.meta["generators"] == [fake]
        for i in range(len(ds)):
            label = int(ds.labels[i])
            assert ds.meta["generator"][i] == ("real" if label == 0 else fake)
            assert ds.meta["source"][i] == (real if label == 0 else fake)
            assert torch.equal(ds.images[i], _original(ds.meta["source"][i], "train", ds.meta["source_index"][i]))
        keys += _keys(ds)
    assert len(keys) == len(set(keys)) == 160  # disjoint splits, no sample twice
    assert {k[2] for k in keys if k[0] == fake} == set(range(80))  # every fake used, once
    assert len({k[2] for k in keys if k[0] == real}) == 80


def test_realfake_deterministic_for_a_seed(files):
    cfg = RealFakeConfig(real=f"npz:{files / 'real.npz'}", fakes=(str(files / "fake.npz"),), seed=3)
    a, b = build_realfake(cfg), build_realfake(cfg)
    other = build_realfake(RealFakeConfig(real=cfg.real, fakes=cfg.fakes, seed=4))
    for split in ("train", "val", "test"):
        assert torch.equal(a[split].images, b[split].images) and torch.equal(a[split].labels, b[split].labels)
        assert a[split].meta == b[split].meta
    assert _keys(a["test"]) != _keys(other["test"])


def test_realfake_generator_source_shares_fake_class_and_is_reproducible(files):
    gpath, few = str(files / "g.safetensors"), str(files / "few.npz")
    cfg = RealFakeConfig(real="mnist", fakes=(gpath, few), n_per_class=100, seed=5, gen_batch_size=16)
    sets = build_realfake(cfg, root=DATA_ROOT)
    again = build_realfake(cfg, root=DATA_ROOT)
    counts = Counter(g for ds in sets.values() for g in ds.meta["generator"])
    assert counts == {"real": 100, few: 30, gpath: 70}  # the generator makes up what the small file lacks
    assert sets["train"].meta["generators"] == [gpath, few]
    # generated images are G(z) with z the seeded stream, in batches of gen_batch_size
    from advkit.gan import load_generator
    g = load_generator(gpath)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        z = torch.cat([torch.randn(min(16, 70 - s), 8, generator=gen) for s in range(0, 70, 16)])
        expected = (g(z).clamp(0, 1) * 255).round().to(torch.uint8)
    for split, ds in sets.items():
        assert torch.equal(ds.images, again[split].images)
        for i, name in enumerate(ds.meta["generator"]):
            if name == gpath:
                assert torch.equal(ds.images[i], expected[ds.meta["source_index"][i]])


@pytest.mark.parametrize("quality", [None, 50])
def test_debias_jpeg_passes_both_classes_through_the_same_round_trip(files, quality):
    real, fake = f"npz:{files / 'real.npz'}", str(files / "fake.npz")
    ds = build_realfake(RealFakeConfig(real=real, fakes=(fake,), debias_jpeg=quality))["val"]
    assert set(ds.labels.tolist()) == {0, 1}
    for i in range(len(ds)):
        orig = _original(ds.meta["source"][i], "train", ds.meta["source_index"][i])[None]
        want = orig if quality is None else T.jpeg(orig, quality)
        assert torch.equal(ds.images[i], want[0])
    if quality is not None:
        assert not all(torch.equal(ds.images[i], _original(ds.meta["source"][i], "train", ds.meta["source_index"][i]))
                       for i in range(len(ds)))


def test_labelled_source_with_its_own_splits(tmp_path):
    for split, (n_real, n_fake) in {"train": (40, 30), "test": (12, 15)}.items():
        x = _noise(n_real + n_fake, 3, 16, seed=len(split))
        y = np.array([0] * n_real + [1] * n_fake, np.int64)
        np.savez(tmp_path / f"lab_{split}.npz", x=x.numpy(), y=y, class_names=np.array(["real", "fake"]))
    spec = f"npz:{tmp_path}/lab_{{split}}.npz"
    sets = build_realfake(RealFakeConfig(labelled=spec, split="source", val_frac=0.2))
    assert [len(sets[s]) for s in ("train", "val", "test")] == [48, 12, 24]  # 30 per class; test 12 per class
    for split, ds in sets.items():
        assert ds.labels.bincount().tolist() == [len(ds) // 2] * 2
        want = f"npz:{tmp_path}/lab_{'test' if split == 'test' else 'train'}.npz"
        assert set(ds.meta["source"]) == {want}
        src = load_dataset(want, "train")
        for i in range(len(ds)):
            assert int(src.labels[ds.meta["source_index"][i]]) == int(ds.labels[i])
            assert torch.equal(ds.images[i], src.images[ds.meta["source_index"][i]])


def test_sources_brought_to_one_size_and_channel_count(files):
    real, rgb = f"npz:{files / 'real.npz'}", str(files / "rgb.npz")
    sets = build_realfake(RealFakeConfig(real=real, fakes=(rgb,), size=16))
    ds = sets["train"]
    assert ds.image_shape == (3, 16, 16) and len(ds.mean) == 3
    reals = ds.images[ds.labels == 0]
    assert torch.equal(reals[:, 0], reals[:, 1]) and torch.equal(reals[:, 1], reals[:, 2])  # gray repeated
    one = build_realfake(RealFakeConfig(real=real, fakes=(rgb,), size=20, channels=1))["test"]
    assert one.image_shape == (1, 20, 20)


def test_realfake_errors_are_one_clear_line(files, tmp_path):
    from advkit.models import create_model as cm

    real, fake = f"npz:{files / 'real.npz'}", str(files / "fake.npz")
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 28, 28), np.uint8), y=np.zeros(0, np.int64))
    save(cm("lenet", num_classes=10, in_chans=1, input_size=28, width=4), tmp_path / "clf.safetensors")
    np.savez(tmp_path / "rev.npz", x=_noise(4, 1, 28).numpy()[:, 0], y=np.array([0, 1, 0, 1]),
             class_names=np.array(["fake", "real"]))
    np.savez(tmp_path / "multi.npz", x=_noise(4, 1, 28).numpy()[:, 0], y=np.array([0, 1, 2, 1]))
    cases = [
        (dict(real=real, fakes=(str(tmp_path / "missing.npz"),)), "no such file"),
        (dict(real=real, fakes=(str(tmp_path / "nope.safetensors"),)), "not found"),
        (dict(real=real, fakes=(str(tmp_path / "empty.npz"),)), "empty source"),
        (dict(real=real, fakes=(str(tmp_path / "clf.safetensors"),)), "classifier checkpoint"),
        (dict(real=real, fakes=(str(files / "rgb.npz"),)), "differ in image size"),
        (dict(real=real), "no fake images"),
        (dict(fakes=(fake,)), "no real images"),
        (dict(labelled=f"npz:{tmp_path / 'rev.npz'}"), "0 = real"),
        (dict(labelled=f"npz:{tmp_path / 'multi.npz'}"), "labels must be 0"),
        (dict(real=real, fakes=(fake,), split="source"), "no separate test split"),
    ]
    for kw, match in cases:
        with pytest.raises(AdvkitError, match=match) as err:
            build_realfake(RealFakeConfig(**kw))
        assert "\n" not in str(err.value)
    for kw, match in [(dict(val_frac=1.0), "val_frac"), (dict(val_frac=0.5, test_frac=0.5), "< 1"),
                      (dict(channels=2), "channels"), (dict(debias_jpeg=0), "quality"),
                      (dict(fakes=("a.npz", "a.npz")), "twice"), (dict(split="random"), "split"),
                      (dict(n_per_class=0), "n_per_class")]:
        with pytest.raises(AdvkitError, match=match):
            RealFakeConfig(**kw)


# ------------------------------------------------------------------------------------------- spectral detector

VARIANTS = [("linear", False), ("linear", True), ("conv", False), ("conv", True)]


def _spectral(head: str, radial: bool, chans: int = 1, size: int = 32, seed: int = 0):
    torch.manual_seed(seed)
    return create_model("spectral", num_classes=2, in_chans=chans, input_size=size, head=head, radial=radial)


@pytest.mark.parametrize("head, radial", VARIANTS)
@pytest.mark.parametrize("chans", [1, 3])
def test_spectral_logits_and_input_gradients(head, radial, chans):
    model = _spectral(head, radial, chans, size=16)
    model.train()
    model(torch.rand(8, chans, 16, 16))  # running statistics away from their initial values
    model.eval()
    x = torch.rand(5, chans, 16, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
    out = model(x)
    assert out.shape == (5, 2) and torch.isfinite(out).all()
    (grad,) = torch.autograd.grad(F.cross_entropy(out, torch.tensor([0, 1, 0, 1, 1])), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert torch.equal(model(x), out)  # deterministic
    # also at a constant image, where most FFT coefficients are exactly zero
    flat = torch.full((2, chans, 16, 16), 0.5, requires_grad=True)
    (g0,) = torch.autograd.grad(model(flat)[:, 1].sum(), flat)
    assert torch.isfinite(g0).all()


@pytest.mark.parametrize("head, radial", VARIANTS)
def test_spectral_checkpoint_round_trip(tmp_path, head, radial):
    model = _spectral(head, radial, chans=3, size=16)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    model.train()
    for step in range(3):
        x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        F.cross_entropy(model(x), torch.arange(8) % 2).backward()
        opt.step()
    model.eval()
    path = save(model, tmp_path / "spectral.safetensors", classes=["real", "fake"])
    back = load(path)
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    assert back.spec["kwargs"] == {"head": head, "radial": radial}
    torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)


def test_spectral_rejects_bad_input():
    with pytest.raises(AdvkitError, match="head"):
        _spectral("mlp", False)
    with pytest.raises(AdvkitError, match=r"expects \[N, 1, 32, 32\]"):
        _spectral("linear", False)(torch.rand(2, 1, 28, 28))


_I = torch.arange(32)
CHECKER = ((_I[:, None] + _I[None, :]) % 2 * 2 - 1).float() * 4  # +-4 grey levels at the Nyquist frequency


def _checker_batch(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random images; class 1 adds a +-4/255 checkerboard (zero mean: invisible to pixel statistics)."""
    y = torch.randint(0, 2, (n,), generator=gen)
    smooth = T.blur((torch.rand(n, 1, 32, 32, generator=gen) * 256).to(torch.uint8), 2.0).float()
    smooth = (smooth - 128) * 1.5 + 128 + torch.randint(-40, 41, (n, 1, 1, 1), generator=gen)  # contrast, brightness
    return (smooth + y.view(-1, 1, 1, 1) * CHECKER).round().clamp(0, 255) / 255, y


@pytest.mark.parametrize("head, radial", VARIANTS)
def test_spectral_detects_a_faint_checkerboard(head, radial):
    x_test, y_test = _checker_batch(400, torch.Generator().manual_seed(123))
    # the best threshold on brightness, contrast, the brightest pixel or one pixel is near chance: the pattern
    # has zero mean and an amplitude far below the images' own variation
    stats = (x_test.mean(dim=(1, 2, 3)), x_test.std(dim=(1, 2, 3)), x_test.amax(dim=(1, 2, 3)), x_test[:, 0, 16, 16])
    for stat in stats:
        above = [((stat > t) == y_test.bool()).float().mean().item() for t in stat.unique()]
        assert max(max(above), 1 - min(above)) < 0.65
    model = _spectral(head, radial)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(300):  # fresh samples every step: a few seconds at most
        x, y = _checker_batch(32, gen)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert acc > 0.95
