"""Where a GAN recipe's training time goes, and how fast recipes run against each other (issue 21).

Each (recipe, thread count) pair trains ``--steps`` steps of its own batch size on the first MNIST images, in
this one process, through ``train_gan(profile=True)``: the seconds per part of the loop (data, G's forward for
D's step, D's forward, backward and optimizer step, G's, the EMA, the loss checks, logging, and at the end of
the epoch the sample grid, the loss curves and the checkpoint) and the steady rate, measured after
``--warmup`` steps (so compilation and first-call allocation are left out; they are reported apart). Pairs run
round-robin ``--repeats`` times, so a load that comes and goes hits every pair alike: on a shared machine
the absolute times are inflated, the fractions and the ratios between pairs of one run are what to read.
A recipe's figure is its median over repeats; ``time_per_epoch_vs_first`` is the steady seconds per 60,000
images against the first recipe's (with their batch sizes, the quantity the time to the targets scales with).

    python -m bench.gan_profile                                        # today's recipe and the fast one
    python -m bench.gan_profile --recipes dcgan_mnist --threads 1,2    # what a second thread does
    python -m bench.gan_profile --steps 8 --warmup 2 --repeats 1 --out /tmp/p.json   # smoke
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from advkit.config import load_config, to_dict
from advkit.gan import GanConfig, train_gan
from bench._common import REPO, RESULTS, write_result

MNIST_TRAIN = 60000
# the parts of a step, in the order a step runs them; the epoch's end and the rest are reported beside
STEP_PARTS = ("data", "d.g_forward", "d.forward", "d.backward", "d.optimizer", "g.forward", "g.backward",
              "g.optimizer", "ema", "checks", "logging", "dg_monitor")
END_PARTS = ("end.sample_grid", "end.curves", "end.checkpoint", "end.final_save")


def config_path(name: str) -> Path:
    p = Path(name)
    return p if p.suffix in (".yaml", ".yml") or p.exists() else REPO / "configs" / "gan" / f"{name}.yaml"


def profile_once(name: str, threads: int, steps: int, warmup: int, sets: list[str], root: Path) -> dict:
    """One timed run of ``steps`` steps of recipe ``name`` with ``threads`` intra-op threads.

    Args:
        name: a config in configs/gan/ or a YAML path.
        threads: torch intra-op threads (the config's ``threads``); 0 keeps the recipe's own.
        steps: training steps (one D and, on the critic schedule, one G step each).
        warmup: steps left out of the steady rate.
        sets: extra KEY=VALUE overrides.
        root: a scratch folder for the run's files.

    Returns:
        The run's figures: steady s/step, per-part seconds and fractions of the timed steps, end-of-epoch parts.
    """
    base = load_config(GanConfig, config_path(name), sets)
    over = [f"data.train_limit={steps * base.batch_size}", "epochs=1", *sets]
    if threads:
        over.append(f"threads={threads}")
    cfg = load_config(GanConfig, config_path(name), over)
    marks: dict[int, float] = {}

    def probe(info: dict) -> None:
        marks[info["g_steps"]] = info["train_s"]

    run_dir = root / f"{config_path(name).stem}_t{threads}"
    t0 = time.perf_counter()
    _, m = train_gan(cfg, run_dir, profile=True, probe=(max(1, warmup), probe))
    wall = time.perf_counter() - t0
    g_steps = m["g_steps"]
    marks_sorted = sorted(marks)
    first = marks_sorted[0] if len(marks_sorted) > 1 else None
    steady = ((marks[g_steps] - marks[first]) / (g_steps - first)) if first is not None and g_steps > first else None
    parts = {k: v for k, v in m["profile_s"].items() if k != "threads"}
    step_total = sum(v for k, v in parts.items() if not k.startswith("end."))
    end = {**{k: v for k, v in parts.items() if k.startswith("end.")}, **m.get("profile_end_s", {})}
    return {"recipe": config_path(name).stem, "threads": m["profile_s"]["threads"], "batch_size": cfg.batch_size,
            "steps": m["d_steps"], "g_steps": g_steps, "warmup_steps": first, "epoch_time_s": m["time_s"],
            "wall_s": round(wall, 2), "steady_s_per_step": steady,
            "first_steps_s": marks[first] if first is not None else None,
            "steady_s_per_60k_images": steady * MNIST_TRAIN / cfg.batch_size if steady else None,
            "parts_s": parts, "step_parts_total_s": round(step_total, 4),
            "fractions": {k: round(v / step_total, 4) for k, v in parts.items()
                          if not k.startswith("end.") and step_total > 0},
            "end_of_epoch_s": end, "resolved_config": to_dict(cfg)}


def summarize(runs: list[dict]) -> list[dict]:
    """Median figures per (recipe, threads) pair, in first-seen order, with ratios to the first pair."""
    keys: list[tuple[str, int]] = []
    for r in runs:
        if (r["recipe"], r["threads"]) not in keys:
            keys.append((r["recipe"], r["threads"]))
    rows = []
    for recipe, threads in keys:
        mine = [r for r in runs if (r["recipe"], r["threads"]) == (recipe, threads)]
        per_60k = [r["steady_s_per_60k_images"] for r in mine if r["steady_s_per_60k_images"]]
        fracs = {k: statistics.median(r["fractions"].get(k, 0.0) for r in mine) for k in mine[0]["fractions"]}
        rows.append({"recipe": recipe, "threads": threads, "batch_size": mine[0]["batch_size"],
                     "repeats": len(mine),
                     "steady_s_per_step": statistics.median(r["steady_s_per_step"] for r in mine
                                                            if r["steady_s_per_step"]) if per_60k else None,
                     "steady_s_per_60k_images": statistics.median(per_60k) if per_60k else None,
                     "fractions": {k: round(v, 4) for k, v in sorted(fracs.items(), key=lambda kv: -kv[1])},
                     "end_of_epoch_s": mine[-1]["end_of_epoch_s"]})
    ref = rows[0]["steady_s_per_60k_images"] if rows else None
    for row in rows:
        v = row["steady_s_per_60k_images"]
        row["time_per_epoch_vs_first"] = round(v / ref, 4) if v and ref else None
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default="dcgan_mnist,dcgan_mnist_fast",
                    help="comma-separated configs in configs/gan/ or YAML paths; the first is the reference")
    ap.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts to run each recipe at")
    ap.add_argument("--steps", type=int, default=120, help="steps per timed run")
    ap.add_argument("--warmup", type=int, default=20, help="steps left out of the steady rate")
    ap.add_argument("--repeats", type=int, default=2, help="round-robin passes over the pairs")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE override applied to every recipe")
    ap.add_argument("--note", default="", help="what else ran on the machine (e.g. 'loaded: 6 other jobs')")
    ap.add_argument("--out", default=None, help="results JSON (default bench/results/gan_profile.json)")
    args = ap.parse_args(argv)
    if args.steps <= args.warmup or args.warmup < 1:
        raise SystemExit("--steps must exceed --warmup, and --warmup be >= 1")
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    runs = []
    with tempfile.TemporaryDirectory(prefix="advkit-gan-profile-") as tmp:
        for rep in range(args.repeats):
            for recipe in recipes:
                for t in threads:
                    r = profile_once(recipe, t, args.steps, args.warmup, args.set, Path(tmp) / f"r{rep}")
                    r["repeat"] = rep
                    runs.append(r)
                    ranked = sorted(r["fractions"].items(), key=lambda kv: -kv[1])
                    top = ", ".join(f"{k} {v:.0%}" for k, v in ranked[:5])
                    print(f"{r['recipe']} threads {r['threads']} batch {r['batch_size']}: "
                          f"{r['steady_s_per_step']:.4f} s/step steady, "
                          f"{r['steady_s_per_60k_images']:.0f} s per 60k images; {top}", flush=True)
    rows = summarize(runs)
    for row in rows:
        print(f"{row['recipe']} threads {row['threads']}: {row['steady_s_per_60k_images']:.0f} s per 60k images "
              f"(x{row['time_per_epoch_vs_first']} the first)", flush=True)
    result = {"steps": args.steps, "warmup": args.warmup, "repeats": args.repeats, "sets": args.set,
              "note": args.note, "torch_threads_default": torch.get_num_threads(), "rows": rows, "runs": runs}
    out = Path(args.out) if args.out else RESULTS / "gan_profile.json"
    write_result(out, "gan_profile", result, machine_extra={"note": args.note} if args.note else None)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
