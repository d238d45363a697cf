"""First-run times of the README's main command, as a new user meets them: ``advkit attack --fgsm`` with an
empty cache (it trains and caches the default MNIST LeNet first), then the same command again (cache warm).
Each run is a fresh process, timed from the outside, so interpreter start-up and imports count.

    python -m bench.first_run            # 2 rounds of (cold, warm)
    python -m bench.first_run --rounds 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench._common import RESULTS, write_result

COMMAND = ["advkit", "attack", "--fgsm"]


def timed(args: list[str], env: dict[str, str], cwd: str) -> float:
    """Wall seconds of one run of ``python -m advkit ARGS``; raises when it fails."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", *args], env=env, cwd=cwd, capture_output=True, text=True,
                       timeout=1800)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {p.returncode}: {p.stderr.strip()[-400:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "first_run.json"))
    args = ap.parse_args()
    cold, warm = [], []
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "ADVKIT_CACHE": os.path.join(tmp, "cache")}
            cmd = [*COMMAND, "--out", os.path.join(tmp, "run")]
            cold.append(timed(cmd, env, tmp))
            warm.append(timed(cmd, env, tmp))
            print(f"cold {cold[-1]:.1f} s, warm {warm[-1]:.1f} s", flush=True)
    result = {"command": " ".join(COMMAND), "rounds": args.rounds, "cold_s": cold, "warm_s": warm,
              "median_cold_s": statistics.median(cold), "median_warm_s": statistics.median(warm),
              "torch_threads_env": os.environ.get("OMP_NUM_THREADS", "default")}
    write_result(args.out, "first_run", result,
                 machine_extra={"load_avg_1min_before": round(load_before, 2),
                                "load_avg_1min_after": round(os.getloadavg()[0], 2)})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
