"""How long the README's test command takes: runs it (or another marker expression) once and records the wall
time, the counts pytest reports and the machine's load before and after.

    python -m bench.test_time                        # the README's command: -m "not gpu and not slow"
    python -m bench.test_time --marker "slow and not gpu" --out bench/results/test_time_slow.json

Run it on a quiet machine: the target (<= 10 minutes on two cores) is about the suite, not the neighbours.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

from bench._common import REPO, RESULTS, write_result

README_MARKER = "not gpu and not slow"
TARGET_S = 600.0
# pytest's last line: "1513 passed, 2 skipped, 3 deselected in 1230.41s (0:20:30)"
COUNTS = re.compile(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)")


def parse_summary(text: str) -> dict[str, int]:
    """The counts in pytest's final summary line (the last line that names any)."""
    for line in reversed(text.strip().splitlines()):
        found = COUNTS.findall(line)
        if found:
            return {("error" if kind.startswith("error") else kind): int(k) for k, kind in found}
    return {}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--marker", default=README_MARKER, help="pytest -m expression (default: the README's)")
    ap.add_argument("--target", type=float, default=TARGET_S, help="seconds")
    ap.add_argument("--out", default=str(RESULTS / "test_time.json"))
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. a test path, for a smoke run)")
    args = ap.parse_args(argv)
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", args.marker, "-p", "no:cacheprovider", *args.pytest_args]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()
    counts = parse_summary(p.stdout)
    result = {"command": "python -m pytest -q -m " + repr(args.marker) + " -p no:cacheprovider"
                         + "".join(f" {a}" for a in args.pytest_args),
              "exit_code": p.returncode, "wall_s": round(wall, 1), "counts": counts, "target_s": args.target,
              "meets_target": p.returncode == 0 and wall <= args.target}
    write_result(args.out, "test_time", result,
                 machine_extra={"load_avg_before": [round(v, 2) for v in load_before],
                                "load_avg_after": [round(v, 2) for v in load_after]})
    print(p.stdout[-1500:])
    print(f"{result['command']}: exit {p.returncode}, {wall:.0f} s ({wall / 60:.1f} min), {counts}; "
          f"target {args.target:.0f} s: {'met' if result['meets_target'] else 'NOT met'}; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
