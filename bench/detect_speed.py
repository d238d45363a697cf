"""``advkit detect`` throughput on a folder of images against the detector's own forward time.

Target (issue 6): on a folder of 1,000 128x128 images, ``advkit detect`` takes at most 1.3x the time of the
model's forward pass over the same images already decoded in memory (decoding hidden behind compute by the
DataLoader workers). Both are timed in one process, interleaved, median of the rounds; the whole call is
timed for detect (worker start-up included), and the same batch size is used for both.

    python -m bench.detect_speed                       # 1,000 PNGs, timm:resnet18 at 128 px
    python -m bench.detect_speed --quick --out /tmp/d.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from advkit.detect.infer import detect_paths
from advkit.models import create_model
from bench._common import RESULTS, write_result

TARGET = 1.3


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> None:
    """``n`` smooth random RGB images (blurred noise plus gradients: PNG work like a photo's, not a flat one)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)
        img = cv2.GaussianBlur(img, (0, 0), 1.0)
        cv2.imwrite(str(folder / f"{i:05d}.png"), img)


def forward_time(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> float:
    t0 = time.perf_counter()
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            model(x[s:s + batch_size])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--model", default="timm:resnet18")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1, help="decoding processes for detect")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smoke run: 64 images of 64 px, small_cnn, 1 round")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.quick:
        args.n, args.size, args.model, args.rounds = 64, 64, "small_cnn", 1
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=2, in_chans=3, input_size=args.size).eval()
    with tempfile.TemporaryDirectory(prefix="advkit-detect-bench-") as tmp:
        folder = Path(tmp)
        make_images(folder, args.n, args.size)
        # the same pixels the detector sees, decoded once up front: the model-only peer
        x = torch.stack([torch.from_numpy(cv2.imread(str(p))[:, :, ::-1].copy()).permute(2, 0, 1)
                         for p in sorted(folder.glob("*.png"))]).float() / 255
        forward_time(model, x[:args.batch_size], args.batch_size)  # warm-up
        fwd, det = [], []
        summary = {}
        for _ in range(args.rounds):
            fwd.append(forward_time(model, x, args.batch_size))
            t0 = time.perf_counter()
            res = detect_paths(model, [folder], batch_size=args.batch_size, workers=args.workers)
            det.append(time.perf_counter() - t0)
            summary = res.summary
            if summary["scored"] != args.n:
                raise SystemExit(f"detect scored {summary['scored']} of {args.n} images")
    f, d = statistics.median(fwd), statistics.median(det)
    ratio = d / f
    result = {"n": args.n, "size": args.size, "model": args.model, "batch_size": args.batch_size,
              "workers": args.workers, "rounds": args.rounds, "forward_s": fwd, "detect_s": det,
              "forward_median_s": f, "detect_median_s": d, "ratio": ratio, "target": TARGET,
              "met": ratio <= TARGET, "detect_images_per_s": args.n / d, "quick": args.quick}
    print(f"{args.n} images {args.size}px, {args.model}: forward {f:.2f} s, advkit detect {d:.2f} s "
          f"({args.n / d:.0f} images/s) -> {ratio:.2f}x the forward time (target <= {TARGET}x)")
    out = Path(args.out) if args.out else RESULTS / f"detect_speed{'_quick' if args.quick else ''}.json"
    write_result(out, "detect_speed", result, device="cpu", table=not args.quick)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
