"""Seed spread of fast adversarial training on MNIST (configs/train/mnist_fgsm_rs.yaml): train one model per
seed, then PGD-50 with 10 restarts (step 0.01, eps 0.3) on the first 1,000 test images, for the final model
and the epoch the catastrophic-overfitting guard rated best. One JSON line per seed.

    python bench/fgsm_rs_seeds.py 1,2,3 > bench/results/fgsm_rs_seeds.jsonl
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_mnist import REPO, robust_accuracy  # noqa: E402

from advkit.config import load_config  # noqa: E402
from advkit.data import load_dataset  # noqa: E402
from advkit.models import load  # noqa: E402
from advkit.train import TrainConfig, train_classifier  # noqa: E402


def main() -> None:
    seeds = [int(s) for s in sys.argv[1].split(",")]
    test = load_dataset("mnist", "test").subset(1000)
    for seed in seeds:
        cfg = load_config(TrainConfig, REPO / "configs/train/mnist_fgsm_rs.yaml", [f"seed={seed}", *sys.argv[2:]])
        out = Path(tempfile.mkdtemp(prefix=f"fgsm-rs-{seed}-"))
        t0 = time.time()
        model, m = train_classifier(cfg, out)
        train_s = time.time() - t0
        final = robust_accuracy(model.cpu(), test, 0.3, 50, 10, 0.01)
        best = robust_accuracy(load(out / "best.safetensors"), test, 0.3, 50, 10, 0.01)
        lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        print(json.dumps({"seed": seed, "train_s": round(train_s), "final_clean_pgd50x10": final,
                          "best_epoch": m.get("best_epoch"), "best_clean_pgd50x10": best,
                          "guard_pgd10": [ln["guard_robust_acc"] for ln in lines],
                          "eval_pgd10": [ln["robust_acc"] for ln in lines]}), flush=True)


if __name__ == "__main__":
    main()
