"""Sample-quality metrics for generators: Frechet distance (FID with any feature extractor), KID, Inception
score, class coverage, and feature/probability extraction from any advkit classifier, or from Inception-v3
with a weights file the user supplies (:func:`inception_model`; nothing is downloaded).

Everything is computed in float64. Inputs may be numpy arrays or torch tensors. With an advkit classifier
(e.g. an MNIST LeNet) instead of Inception-v3 the numbers are comparable only between runs that use the
same classifier, not with published FID/IS values.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from advkit.errors import AdvkitError


def _np64(a, name: str, ndim: int | None = None) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().numpy()
    a = np.asarray(a, dtype=np.float64)
    if ndim is not None and a.ndim != ndim:
        raise AdvkitError(f"{name} must be {ndim}-D, got shape {list(a.shape)}")
    if not np.isfinite(a).all():
        raise AdvkitError(f"{name} has non-finite values")
    return a


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """``||mu1 - mu2||^2 + Tr(s1 + s2 - 2 (s1 s2)^(1/2))``: the Frechet (2-Wasserstein) distance of Gaussians.

    ``Tr((s1 s2)^(1/2))`` is the sum of the square roots of the eigenvalues of ``s1^(1/2) s2 s1^(1/2)``,
    which is similar to ``s1 s2`` and symmetric positive semi-definite, so a symmetric eigensolver handles
    it stably, singular covariances (fewer samples than dimensions) included. Round-off below 0 is clipped.
    Over Inception pool features (:func:`feature_stats` of :func:`extract`) this is the FID.

    Args:
        mu1: the first mean [F] (array-like, computed in float64).
        sigma1: the first covariance [F, F].
        mu2: the second mean [F].
        sigma2: the second covariance [F, F].

    Returns:
        The distance, >= 0.

    Raises:
        AdvkitError: shapes that do not match.
    """
    mu1, mu2 = _np64(mu1, "mu1", 1), _np64(mu2, "mu2", 1)
    s1, s2 = _np64(sigma1, "sigma1", 2), _np64(sigma2, "sigma2", 2)
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise AdvkitError(f"shapes do not match: mu1 {list(mu1.shape)}, sigma1 {list(s1.shape)}, "
                          f"mu2 {list(mu2.shape)}, sigma2 {list(s2.shape)}")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    r1 = _psd_sqrt(s1)
    m = r1 @ s2 @ r1
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    fd = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)
    return max(fd, 0.0)


def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of a feature set, as :func:`frechet_distance` takes them.

    Args:
        features: [N, F] with N >= 2 (array-like).

    Returns:
        ``(mean [F], covariance [F, F])``, float64 numpy.

    Raises:
        AdvkitError: not [N, F], or fewer than 2 rows.
    """
    f = _np64(features, "features", 2)
    if f.shape[0] < 2:
        raise AdvkitError(f"need at least 2 feature vectors for a covariance, got {f.shape[0]}")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False, ddof=1))


def _t64(a, name: str) -> torch.Tensor:
    return torch.from_numpy(_np64(a, name, 2))


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    d, m = x.shape[1], x.shape[0]
    kxx = (x @ x.T / d + 1).pow(3)
    kyy = (y @ y.T / d + 1).pow(3)
    kxy = (x @ y.T / d + 1).pow(3)
    off = m * (m - 1)
    return float((kxx.sum() - kxx.diagonal().sum()) / off + (kyy.sum() - kyy.diagonal().sum()) / off
                 - 2 * kxy.mean())


def kid(f1, f2, *, subsets: int = 10, subset_size: int = 1000,
        generator: torch.Generator | None = None) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with ``k(x, y) = (x.y / d + 1)^3``.

    Averaged over ``subsets`` random subsets of ``subset_size`` rows from each feature set [N, d] (clipped to
    the smaller set, drawn without replacement with the CPU ``generator``). Unbiased, so it can be
    slightly negative when the distributions match.

    Args:
        f1: one feature set [N1, d] (array-like).
        f2: the other [N2, d].
        subsets: how many subsets to average over.
        subset_size: rows per subset (at most the smaller set's size).
        generator: a CPU random stream for the subsets; ``None``: torch's global one.

    Returns:
        ``(mean, std)`` over the subsets.

    Raises:
        AdvkitError: feature sizes that differ, ``subsets`` < 1, or subsets of fewer than 2 rows.
    """
    x, y = _t64(f1, "f1"), _t64(f2, "f2")
    if x.shape[1] != y.shape[1]:
        raise AdvkitError(f"feature sizes differ: {x.shape[1]} vs {y.shape[1]}")
    if subsets < 1:
        raise AdvkitError(f"subsets must be >= 1, got {subsets}")
    m = min(int(subset_size), x.shape[0], y.shape[0])
    if m < 2:
        raise AdvkitError(f"KID needs subsets of at least 2 samples, got {m}")
    vals = []
    for _ in range(subsets):
        ix = torch.randperm(x.shape[0], generator=generator)[:m]
        iy = torch.randperm(y.shape[0], generator=generator)[:m]
        vals.append(_mmd2_unbiased(x[ix], y[iy]))
    return float(np.mean(vals)), float(np.std(vals))


def _check_probs(probs, name: str = "probs") -> np.ndarray:
    p = _np64(probs, name, 2)
    if p.shape[0] < 1 or (p < 0).any() or not np.allclose(p.sum(1), 1.0, atol=1e-3):
        raise AdvkitError(f"{name} must be class probabilities [N, K] (non-negative rows summing to 1); "
                          "apply softmax to logits first")
    return p / p.sum(1, keepdims=True)


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    """Inception score ``exp(E_x KL(p(y|x) || p(y)))`` (Salimans et al. 2016), per split of the samples.

    ``p(y)`` is each split's mean; the score ranges from 1 to K.

    Args:
        probs: class probabilities [N, K] (rows summing to 1; apply softmax to logits first).
        splits: how many splits, in [1, N].

    Returns:
        ``(mean, std)`` over the splits.

    Raises:
        AdvkitError: not probabilities, or a bad split count.
    """
    p = _check_probs(probs)
    if not 1 <= splits <= p.shape[0]:
        raise AdvkitError(f"splits must be in [1, {p.shape[0]}] (the sample count), got {splits}")
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(part > 0, part * (np.log(part) - np.log(py)), 0.0)  # 0 log 0 = 0
        scores.append(math.exp(terms.sum(1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def class_coverage(probs_or_labels, num_classes: int) -> list[float]:
    """Share of samples per (predicted) class; a mode-collapsed generator leaves classes near 0.

    Args:
        probs_or_labels: labels [N], or probabilities or logits [N, K] (their argmax is taken).
        num_classes: K.

    Returns:
        K shares summing to 1.

    Raises:
        AdvkitError: a bad shape, or labels outside [0, K).
    """
    a = probs_or_labels
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if a.ndim == 2:
        if a.shape[1] != num_classes:
            raise AdvkitError(f"probabilities have {a.shape[1]} classes, expected {num_classes}")
        a = a.argmax(1)
    if a.ndim != 1 or a.shape[0] == 0:
        raise AdvkitError(f"expected labels [N] or probabilities [N, K] with N > 0, got shape {list(a.shape)}")
    if num_classes < 1 or a.min() < 0 or a.max() >= num_classes or (a != np.round(a)).any():
        raise AdvkitError(f"labels must be integers in [0, {num_classes - 1}]")
    counts = np.bincount(a.astype(np.int64), minlength=num_classes)
    return (counts / counts.sum()).tolist()


def _find_layer(model: nn.Module, layer: str | nn.Module | None) -> nn.Module:
    if isinstance(layer, nn.Module):
        return layer
    if isinstance(layer, str):
        mods = dict(model.named_modules())
        if layer not in mods:
            raise AdvkitError(f"model has no submodule {layer!r}")
        return mods[layer]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise AdvkitError("model has no nn.Linear layer to take features from; pass layer=")
    return linears[-1]


@torch.no_grad()
def extract(model: nn.Module, images, batch_size: int = 500, *,
            layer: str | nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and class probabilities of ``images`` under an advkit classifier ``f(x in [0,1]) -> logits``.

    Features are the input of ``layer`` (a module or its name in ``model.named_modules()``; default: the
    last ``nn.Linear`` registered in the model, i.e. the penultimate activations), flattened. ``images`` are
    float in [0,1] or uint8 [N, C, H, W] (divided by 255 per batch). The model runs in eval mode on its own
    device (its train/eval state is restored).

    Args:
        model: ``f(x in [0,1]) -> logits [N, K]``, e.g. :func:`inception_model`.
        images: [N, C, H, W], float in [0,1] or uint8.
        batch_size: images per forward pass.
        layer: the module whose input is the feature, or its name; default the last ``nn.Linear``.

    Returns:
        CPU float64 ``(features [N, F], probs [N, K])``.

    Raises:
        AdvkitError: bad images or batch size, or a layer that is missing or does not run.
    """
    if batch_size < 1:
        raise AdvkitError(f"batch_size must be >= 1, got {batch_size}")
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise AdvkitError(f"images must be float in [0,1] or uint8, got {images.dtype}")
    if images.ndim != 4 or images.shape[0] == 0:
        raise AdvkitError(f"images must be a non-empty [N, C, H, W] batch, got shape {list(images.shape)}")
    target = _find_layer(model, layer)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    captured: list[torch.Tensor] = []
    handle = target.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
    was_training = model.training
    model.eval()
    feats, probs = [], []
    try:
        for i in range(0, images.shape[0], batch_size):
            x = images[i:i + batch_size].to(device)
            x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
            captured.clear()
            logits = model(x)
            if not captured:
                raise AdvkitError("the feature layer did not run in the model's forward; pass layer=")
            feats.append(captured[-1].flatten(1).double().cpu())
            probs.append(torch.softmax(logits.double(), dim=1).cpu())
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(feats), torch.cat(probs)


class InceptionFeatures(nn.Module):
    """torchvision's Inception-v3 on advkit's contract: ``f(x in [0,1]) -> 1000 ImageNet logits``.

    Images of any size and 1 or 3 channels are resized to 299x299 (bilinear) and gray is repeated to RGB;
    the network sees ``2x - 1``, the [-1, 1] input its ported weights expect. :func:`extract` then takes
    the 2048-d pool features (the input of ``fc``) and the class probabilities, so FD over these features is
    an FID and the score an Inception score, up to the differences between torchvision's port and the
    original TensorFlow graph (values close to, not identical with, published ones).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise AdvkitError(f"Inception features need [N, 1 or 3, H, W] images, got {list(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (299, 299):
            x = nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        out = self.net(x * 2 - 1)
        return out.logits if hasattr(out, "logits") else out


def inception_model(weights_file: str, device: str | torch.device = "cpu") -> InceptionFeatures:
    """torchvision's Inception-v3 on advkit's contract, from the user's local copy of its ImageNet weights.

    Nothing is downloaded; the file is read without running pickled code; keys must match exactly.

    Args:
        weights_file: ``inception_v3_google-*.pth``, or a ``.safetensors`` of the same state dict.
        device: where the model goes.

    Returns:
        An :class:`InceptionFeatures` in eval mode.

    Raises:
        AdvkitError: a missing or unreadable file, or weights that are not torchvision's Inception-v3.
    """
    from pathlib import Path

    from torchvision.models import inception_v3

    path = Path(weights_file)
    if not path.is_file():
        raise AdvkitError(f"Inception weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch and safetensors raise several types for foreign files
        raise AdvkitError(f"{path}: not a readable weights file ({type(e).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AdvkitError(f"{path}: expected a state dict of tensors")
    net = inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=False)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise AdvkitError(f"{path}: not torchvision Inception-v3 weights ({len(missing)} keys missing, e.g. "
                          f"{missing[:2]}; {len(extra)} unexpected, e.g. {extra[:2]})")
    bad = [k for k in expected if expected[k].shape != state[k].shape]
    if bad:
        raise AdvkitError(f"{path}: shape mismatch for {len(bad)} tensors, e.g. {bad[0]}")
    net.load_state_dict(state)
    return InceptionFeatures(net).to(device).eval()
