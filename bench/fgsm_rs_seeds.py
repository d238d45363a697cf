"""Seed spread of fast adversarial training on MNIST (configs/train/mnist_fgsm_rs.yaml): train one model per
seed, then PGD-50 with 10 restarts (step 0.01, eps 0.3) on the first 1,000 test images, for the final model
and the epoch the catastrophic-overfitting guard rated best. One JSON line per seed as it finishes, then all of
them in bench/results/fgsm_rs_seeds.json.

    python -m bench.fgsm_rs_seeds 1,2,3
    python -m bench.fgsm_rs_seeds 1 epochs=2 --out /tmp/seeds.json     # KEY=VALUE: config overrides
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from advkit.config import load_config
from advkit.data import load_dataset
from advkit.models import load
from advkit.train import TrainConfig, train_classifier
from bench._common import REPO, RESULTS, write_result
from bench.train_mnist import robust_accuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("seeds", help="comma-separated seeds")
    ap.add_argument("sets", nargs="*", help="KEY=VALUE config overrides")
    ap.add_argument("--out", default=str(RESULTS / "fgsm_rs_seeds.json"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    test = load_dataset("mnist", "test").subset(1000)
    rows = []
    for seed in seeds:
        cfg = load_config(TrainConfig, REPO / "configs/train/mnist_fgsm_rs.yaml", [f"seed={seed}", *args.sets])
        out = Path(tempfile.mkdtemp(prefix=f"fgsm-rs-{seed}-"))
        t0 = time.time()
        model, m = train_classifier(cfg, out)
        train_s = time.time() - t0
        final = robust_accuracy(model.cpu(), test, 0.3, 50, 10, 0.01)
        best = robust_accuracy(load(out / "best.safetensors"), test, 0.3, 50, 10, 0.01)
        lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        rows.append({"seed": seed, "train_s": round(train_s), "final_clean_pgd50x10": final,
                     "best_epoch": m.get("best_epoch"), "best_clean_pgd50x10": best,
                     "guard_pgd10": [ln["guard_robust_acc"] for ln in lines],
                     "eval_pgd10": [ln["robust_acc"] for ln in lines]})
        print(json.dumps(rows[-1]), flush=True)
    write_result(args.out, "fgsm_rs_seeds", rows, device="cpu", table=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
