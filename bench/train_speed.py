"""Throughput of adversarial training: an ``fgsm_rs`` epoch against a clean epoch of the same model and data,
in one process, interleaved (target: at most 2.3x; two forward/backward passes are the floor of 2x).

    python -m bench.train_speed            # MNIST, small_cnn and lenet, 20,000 images, 3 rounds
    python -m bench.train_speed --quick
"""

from __future__ import annotations

import argparse
import statistics

from advkit.config import load_config
from advkit.train import TrainConfig, train_classifier
from bench._common import RESULTS, write_result

OBJECTIVES = {"clean": [], "fgsm_rs": ["objective.name=fgsm_rs", "objective.eps=0.3", "objective.alpha=0.375"],
              "pgd10": ["objective.name=pgd", "objective.eps=0.3", "objective.steps=10"]}


def epoch_time(model: str, n: int, extra: list[str], device: str) -> float:
    cfg = load_config(TrainConfig, None, [f"model.name={model}", f"data.train_limit={n}", "data.test_limit=100",
                                          "eval.n=1", "epochs=1", "batch_size=100", "guard.enabled=false",
                                          "tensorboard=false", f"device={device}", *extra])
    _, m = train_classifier(cfg)
    return m["epoch_time_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(RESULTS / "train_speed.json"))
    args = ap.parse_args()
    n, rounds, models = (2000, 3, ["small_cnn"]) if args.quick else (20000, 3, ["small_cnn", "lenet"])
    rows = []
    for model in models:
        times: dict[str, list[float]] = {k: [] for k in OBJECTIVES}
        for extra in OBJECTIVES.values():  # warm-up
            epoch_time(model, min(n, 1000), extra, args.device)
        for _ in range(rounds):  # interleaved, so background load hits every objective alike
            for name, extra in OBJECTIVES.items():
                times[name].append(epoch_time(model, n, extra, args.device))
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"model": model, "images": n, "rounds": rounds, "median_epoch_s": med,
               "ratio_to_clean": {k: med[k] / med["clean"] for k in med}, "all_s": times}
        rows.append(row)
        print(f"{model}: clean {med['clean']:.2f}s, fgsm_rs {med['fgsm_rs']:.2f}s "
              f"({row['ratio_to_clean']['fgsm_rs']:.2f}x), pgd-10 {med['pgd10']:.2f}s "
              f"({row['ratio_to_clean']['pgd10']:.2f}x) per epoch of {n} images", flush=True)
    result = {"rows": rows, "target_fgsm_rs_ratio": 2.3, "quick": args.quick}
    write_result(args.out, "train_speed", result, device=args.device, table=not args.quick)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
