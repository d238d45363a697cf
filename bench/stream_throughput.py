"""Streaming costs (almost) nothing: images per second of a PGD-10 eval on streamed 224 px images against the
same attack on the same tensors already in memory (target: streamed >= 0.9x in memory).

Both runs go through ``run_eval`` in this process with one config: the streamed run reads a generated
``imagefolder:`` (JPEG, decoded, resized and cropped in DataLoader workers while the attack runs); the in-memory
run gets that folder's images already decoded at the same size (an ``ArrayDataset``, read before the clock
starts). An untimed warm-up runs each kind once first: the first eval in a process pays one-time costs (lazy
imports, oneDNN kernel set-up, the allocator growing) that would otherwise land on whichever kind went first.
Rounds alternate the order (ABBA); the ratio is of the medians. A sanity figure: both give the same per-sample
outcomes (they see the same pixels).

    python -m bench.stream_throughput                 # 128 images, timm ResNet-18, PGD-10, 2 workers, 3 rounds
    python -m bench.stream_throughput --n 64 --rounds 1 --warmup 0
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench._common import RESULTS, write_result
from bench.stream_memory import make_imagefolder


def main(argv: list[str] | None = None) -> None:
    from advkit.config import load_config
    from advkit.data import open_dataset
    from advkit.eval.config import EvalConfig
    from advkit.eval.harness import run_eval

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=128, help="images")
    ap.add_argument("--model", default="timm:resnet18")
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--side", type=int, default=256, help="generated image side (resized and cropped)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eps", type=float, default=4 / 255)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs of each kind before the rounds")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--target", type=float, default=0.9)
    ap.add_argument("--out", default=str(RESULTS / "stream_throughput.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_imagefolder(Path(tmp) / "set", args.n, side=args.side)
        spec = f"imagefolder:{folder}"
        sets = [f"data.dataset={spec}", "data.n=null", f"data.num_workers={args.workers}",
                f"data.input_size={args.input_size}", "data.crop_pct=0.875", "data.interpolation=bilinear",
                f"models=[{{model: '{args.model}'}}]", f"batch_size={args.batch_size}", "checks.enabled=false",
                "examples=0", "device=cpu",
                f"threat_models=[{{norm: linf, eps: [{args.eps}], attacks: [{{name: pgd, steps: {args.steps}}}]}}]"]
        cfg = load_config(EvalConfig, None, sets)
        mem = open_dataset(spec, input_size=args.input_size, crop_pct=0.875, interpolation="bilinear").materialize()
        times: dict[str, list[float]] = {"streamed": [], "in_memory": []}
        reports: dict[str, dict] = {}
        for r in range(-args.warmup, args.rounds):
            for kind in ("streamed", "in_memory") if r % 2 == 0 else ("in_memory", "streamed"):
                torch.manual_seed(0)
                t0 = time.perf_counter()
                rep = run_eval(cfg, device=torch.device("cpu"), data=None if kind == "streamed" else mem)
                took = time.perf_counter() - t0
                assert rep is not None
                if r < 0:
                    print(f"warm-up: {kind} {took:.1f} s", flush=True)
                    continue
                times[kind].append(took)
                reports[kind] = rep
                print(f"round {r}: {kind} {took:.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ips = {k: args.n / v for k, v in med.items()}
    outcomes = {k: rep["models"][0]["threat_models"][0]["per_sample"] for k, rep in reports.items()}
    result = {"model": args.model, "n": args.n, "input_size": args.input_size, "generated_side": args.side,
              "attack": f"pgd-{args.steps} linf eps {args.eps:.4g}", "batch_size": args.batch_size,
              "workers": args.workers, "rounds": args.rounds, "warmup": args.warmup, "wall_s": times,
              "images_per_s": {k: round(v, 3) for k, v in ips.items()},
              "ratio": round(ips["streamed"] / ips["in_memory"], 3), "target": args.target,
              "meets_target": ips["streamed"] / ips["in_memory"] >= args.target,
              "same_outcomes": outcomes["streamed"] == outcomes["in_memory"],
              "note": "the machine record holds the 1-minute load average before and after (about the torch "
                      "thread count: quiet; more: other jobs shared the cores); decoding workers run at the "
                      "lowest priority beside the attack's torch threads on the same cores"}
    write_result(args.out, "stream_throughput", result,
                 machine_extra={"load_avg_1min_before": round(load_before, 2),
                                "load_avg_1min_after": round(os.getloadavg()[0], 2), "torch_threads": args.threads},
                 table=True)
    print(f"streamed {ips['streamed']:.2f} img/s, in memory {ips['in_memory']:.2f} img/s: ratio {result['ratio']} "
          f"(target {args.target}); same outcomes: {result['same_outcomes']}; wrote {args.out}")


if __name__ == "__main__":
    main()
