"""Cross-generator generalization of the MNIST detectors (issue 6): train on the fakes of one advkit generator,
score real MNIST test digits against the fakes of others through ``advkit eval``'s detection mode
(configs/eval/detect_cross_generator.yaml), and report per-generator AUC and AP.

    python -m bench.detect_cross_generator --train ns=runs/gan/generator.safetensors \\
        --test ns_seed1=runs/gan_s1/generator.safetensors --test hinge=runs/gan_hinge/generator.safetensors ...
    python -m bench.detect_cross_generator --train a=G1 --test b=G2 --quick --out /tmp/x.json   # smoke run

The training generator is scored too (fresh z, the real test digits), as the in-distribution reference.
``--configs`` picks the detector configs (default: mnist_dcgan and its hardened variant).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from advkit.config import load_config
from advkit.detect.config import DetectorConfig
from advkit.detect.config import EvalDetectionConfig as EvalConfig  # `advkit eval`'s config, detection section
from advkit.detect.report import run_detection_eval as run_eval
from advkit.detect.train import train_detector
from bench._common import REPO, RESULTS, write_result


def named(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, eq, path = item.partition("=")
        if not eq or not name or not path:
            sys.exit(f"{flag} expects NAME=PATH, got {item!r}")
        if name in out:
            sys.exit(f"{flag}: the name {name!r} is given twice")
        out[name] = path
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="NAME=PATH: the generator whose fakes the detectors train on")
    ap.add_argument("--test", action="append", default=[], help="NAME=PATH: another generator (repeatable)")
    ap.add_argument("--configs", default="mnist_dcgan,mnist_dcgan_hardened", help="detector configs to train")
    ap.add_argument("--detector", action="append", default=[],
                    help="NAME=PATH: a detector already trained on --train's fakes (repeatable); skips training")
    ap.add_argument("--quick", action="store_true", help="smoke run: 300 images per class, one epoch")
    ap.add_argument("--out", default=None, help="results JSON (default bench/results/detect_cross_generator.json)")
    ap.add_argument("--run-dir", default=None)
    args = ap.parse_args()
    train = named([args.train], "--train")
    gens = {**train, **named(args.test, "--test")}
    if len(set(gens.values())) != len(gens):
        sys.exit("two names point at the same generator file")
    (train_name, train_path), = train.items()
    by_path = {p: n for n, p in gens.items()}
    root = Path(args.run_dir) if args.run_dir else Path(tempfile.mkdtemp(prefix="advkit-xgen-"))
    sets = [f"data.fakes=[{train_path}]", f"data_root={REPO / 'datasets'}"]
    quick = ["data.n_per_class=300", "train.epochs=1", "train.eval.n=64"] if args.quick else []
    eval_sets = [f"detection.data.fakes=[{','.join(gens.values())}]", f"data.root={REPO / 'datasets'}"]
    if args.quick:
        eval_sets += ["detection.data.n_per_class=300", "detection.evaluation.n=100",
                      "detection.evaluation.pgd_steps=5", "checks.n=50"]
    rows = []
    trained = named(args.detector, "--detector")
    for name in trained or args.configs.split(","):
        train_s = 0.0
        if name not in trained:
            cfg = load_config(DetectorConfig, REPO / "configs" / "detect" / f"{name}.yaml", sets + quick)
            t0 = time.perf_counter()
            train_detector(cfg, root / name)
            train_s = time.perf_counter() - t0
        model = trained.get(name) or root / name / "model.safetensors"
        ecfg = load_config(EvalConfig, REPO / "configs" / "eval" / "detect_cross_generator.yaml",
                           [*eval_sets, f"models=[{{name: {name}, model: {model}}}]"])
        t0 = time.perf_counter()
        report = run_eval(ecfg, device=torch.device("cpu"))
        eval_s = time.perf_counter() - t0
        det = report["models"][0]["detection"]
        per = {by_path[g]: {"auc": r["auc"], "ap": r["ap"], "n_fake": r["n_fake"]}
               for g, r in det["per_generator"].items()}
        rows.append({"detector": name, "per_generator": per, "all_auc": det["clean"]["auc"],
                     "robust_auc": {r["label"]: r["auc"] for r in det["robust"]},
                     "train_s": round(train_s, 1), "eval_s": round(eval_s, 1)})
        print(f"{name}: " + ", ".join(f"{g} AP {v['ap']:.4f}" for g, v in per.items()), flush=True)
    result = {"train_generator": train_name, "generators": gens, "quick": args.quick, "rows": rows}
    out = Path(args.out) if args.out else RESULTS / f"detect_cross_generator{'_quick' if args.quick else ''}.json"
    write_result(out, "detect_cross_generator", result, device="cpu", table=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
