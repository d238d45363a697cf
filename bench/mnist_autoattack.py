"""AutoAttack next to PGD for every shipped adversarially trained MNIST config, on the full test set.

For each config this trains the model as a user would (``advkit train classifier -c configs/train/NAME.yaml``),
then runs two evaluations with ``advkit eval`` on the 10,000 MNIST test images at the config's eps:
PGD-50 with 10 restarts (step 0.01, the README's figure) on its own, and the ``autoattack`` preset (APGD-CE,
APGD-T, FAB-T, Square-5000, each on the samples still standing: AutoAttack's ``standard`` run). Every step
resumes where an interrupted run stopped (training from ``last.ckpt``, evaluation from its per-batch
progress), so the hours this takes on two cores can be spread over several sittings.

    python -m bench.mnist_autoattack                                  # all four configs, 10,000 images
    python -m bench.mnist_autoattack --configs mnist_pgd --n 500      # one config on a slice
    python -m bench.mnist_autoattack --quick                          # smoke size (tests)

The figures are advkit's own implementation of the AutoAttack members; ``bench/autoattack.py`` and
``tests/test_autoattack_reference.py`` compare them with the reference code.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench._common import REPO, RESULTS, command_line, write_result

CONFIGS = ("mnist_fgsm", "mnist_fgsm_rs", "mnist_pgd", "mnist_trades")
PGD = {"name": "pgd", "steps": 50, "restarts": 10, "alpha": 0.01}
# --quick: a few hundred training images and reduced budgets, to prove the plumbing only
QUICK_TRAIN = ["epochs=1", "data.train_limit=2000", "data.test_limit=200", "eval.n=50"]
QUICK_ATTACKS = {"pgd": [{"name": "pgd", "steps": 3, "restarts": 1, "alpha": 0.1}],
                 "autoattack": [{"name": "apgd-ce", "steps": 3}, {"name": "apgd-t", "steps": 3},
                                {"name": "fab-t", "steps": 3}, {"name": "square", "n_queries": 20}]}


def _advkit(*args: str) -> None:
    cmd = [sys.executable, "-m", "advkit", *args]
    print("+ advkit " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def _train(config: str, run: Path, quick: bool, seed: int) -> Path:
    model = run / "model.safetensors"
    if (run / "done").exists():
        return model
    args = ["train", "classifier", "-c", str(REPO / "configs" / "train" / f"{config}.yaml"), "--out", str(run),
            "--set", f"seed={seed}"]
    for s in QUICK_TRAIN if quick else []:
        args += ["--set", s]
    if (run / "last.ckpt").exists():
        args.append("--resume")
    _advkit(*args)
    (run / "done").write_text("trained\n")
    return model


def _eval(model: Path, out: Path, attacks: list[dict], eps: float, n: int | None, mode: str, seed: int) -> dict:
    report = out / "report.json"
    if not report.exists():
        cfg = {"models": [{"name": model.parent.name, "model": str(model)}],
               "data": {"dataset": "mnist", "split": "test", "n": n},
               "threat_models": [{"norm": "linf", "eps": [eps], "attacks": attacks}],
               "mode": mode, "seed": seed, "batch_size": 500, "checks": {"enabled": False}}
        out.mkdir(parents=True, exist_ok=True)
        spec = out.parent / f"{out.name}.yaml"
        spec.write_text(json.dumps(cfg))  # JSON is YAML
        resume = ["--resume"] if (out / ".eval_progress").exists() else []
        _advkit("eval", "-c", str(spec), "--out", str(out), "--quiet", *resume)
    return json.loads(report.read_text())


def _summary(report: dict) -> dict:
    """Clean and worst-case robust accuracy, their intervals, counts and the attack time from one report."""
    m = report["models"][0]
    tm = m["threat_models"][0]
    worst = tm["worst_case"][0]
    per_attack = {a["label"]: {"robust_acc": a["results"][0]["robust_acc"], "fooled": a["results"][0]["fooled"],
                               "attacked": a["results"][0]["attacked"]} for a in tm["attacks"]}
    return {"clean_acc": m["clean_acc"], "clean_acc_ci": m.get("clean_acc_ci"),
            "robust_acc": worst["robust_acc"], "robust_acc_ci": worst["robust_acc_ci"], "robust": worst["robust"],
            "n": tm["n"], "attack_time_s": worst["time_s"], "attacks": per_attack}


def run(configs: list[str], runs: Path, n: int | None, quick: bool, seed: int) -> dict:
    from advkit.config import load_config
    from advkit.train import TrainConfig

    rows = []
    for config in configs:
        eps = load_config(TrainConfig, REPO / "configs" / "train" / f"{config}.yaml", []).objective.eps
        t0 = time.perf_counter()
        model = _train(config, runs / config, quick, seed)
        pgd_attack = QUICK_ATTACKS["pgd"] if quick else [PGD]
        aa_attack = QUICK_ATTACKS["autoattack"] if quick else [{"name": "autoattack"}]
        pgd = _summary(_eval(model, runs / f"{config}-pgd", pgd_attack, eps, n, "full", seed))
        aa = _summary(_eval(model, runs / f"{config}-autoattack", aa_attack, eps, n, "cascade", seed))
        row = {"config": config, "eps": eps, "n": pgd["n"], "clean_acc": pgd["clean_acc"],
               "clean_acc_ci": pgd["clean_acc_ci"], "pgd_acc": pgd["robust_acc"], "pgd_acc_ci": pgd["robust_acc_ci"],
               "autoattack_acc": aa["robust_acc"], "autoattack_acc_ci": aa["robust_acc_ci"],
               "autoattack_members": aa["attacks"], "pgd_attack": pgd_attack, "seed": seed,
               "pgd_time_s": pgd["attack_time_s"], "autoattack_time_s": aa["attack_time_s"],
               "wall_s_this_sitting": round(time.perf_counter() - t0, 1)}
        print(f"{config}: clean {row['clean_acc']:.2%}, PGD-50x10 {row['pgd_acc']:.2%}, "
              f"AutoAttack {row['autoattack_acc']:.2%} at eps {eps:g} on {row['n']} images", flush=True)
        rows.append(row)
    return {"rows": rows, "quick": quick}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated configs/train names")
    p.add_argument("--n", type=int, default=None, help="test images (default all 10,000)")
    p.add_argument("--runs", default=str(REPO / "runs" / "mnist_autoattack"),
                   help="where models and reports go (kept: a second call resumes from them)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke size: tiny training, 3-step attacks")
    p.add_argument("--out", help="result file (default bench/results/mnist_autoattack[_quick].json)")
    args = p.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        p.error(f"unknown config(s) {unknown}; choose from {list(CONFIGS)}")
    os.environ.setdefault("ADVKIT_DATA", str(REPO.parent / "shared" / "datasets"))
    n = args.n if args.n is not None or not args.quick else 500
    results = run(configs, Path(args.runs), n, args.quick, args.seed)
    out = Path(args.out) if args.out else RESULTS / f"mnist_autoattack{'_quick' if args.quick else ''}.json"
    # the figures come from the reports under --runs, which earlier sittings may have made (accuracies do not
    # depend on threads or load); this machine record is of the sitting that wrote the file
    write_result(out, "mnist_autoattack", results, device="cpu", table=True,
                 machine_extra={"note": "accuracies from the advkit eval reports under --runs, possibly made in "
                                        "earlier sittings; timings in the rows are not comparable"})
    print(f"wrote {out}  ({command_line('mnist_autoattack', argv)})")
    return results


if __name__ == "__main__":
    main()
