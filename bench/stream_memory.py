"""Memory stays flat on streamed data: ``advkit eval`` on generated 224 px image folders of 1,000 and 10,000
images (ImageNet layout, JPEG), a timm ResNet-18 (random init), and the peak memory of each run.

The claim is flatness, not speed: to keep a 10,000-image run affordable on a CPU the attack is cheap (FGSM, one
eps, batch 32, sanity checks off). Each eval runs in a fresh process, started by a small wrapper that reads
``getrusage(RUSAGE_CHILDREN)`` (the eval process's peak RSS; DataLoader workers are separate processes and
count on their own), while this script samples the proportional set size (PSS) of the whole process tree.

Compare sizes well past the first batches: the allocator's peak settles only after a few batches of 224 px
activations (a 64- against a 400-image run differed by about 600 MiB for that reason on the 2-core machine,
while 320 against 960 images differed by -47 MiB RSS).

Each run also keeps ``pss_trace`` (about 60 samples of ``[seconds, tree PSS, each process's PSS]``, MiB): a
process whose line climbs batch after batch grows with the sample count, one that levels off does not (peaks
alone are noisy). Issue 19: the DataLoader workers' PSS climbed linearly (glibc kept the freed decode buffers);
``advkit.data.stream.release_freed_memory`` after each batch keeps them flat.

    python -m bench.stream_memory                           # 1,000 then 10,000 images
    python -m bench.stream_memory --sizes 200,1000 --workers 2
    python -m bench.stream_memory --sizes 1000,5000 --model timm:resnet10t --side 72 --input-size 64 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._common import RESULTS, write_result

# runs the command in argv[1:] and prints the peak RSS (KiB) of its process tree's largest waited-for member
WRAPPER = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
           "print('MAXRSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
           "sys.exit(rc)")


def make_imagefolder(root: Path, n: int, *, side: int = 256, classes: int = 10, seed: int = 0,
                     ext: str = ".jpg") -> Path:
    """Write ``n`` synthetic images (smooth colour fields plus noise, ``side`` px, mixed aspect) in ImageNet
    layout under ``root``; returns ``root``."""
    import cv2

    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"class{c:03d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        h, w = (side, side + side // 4) if i % 2 else (side + side // 8, side)
        low = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
        img = np.clip(img.astype(np.int16) + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(ext, img)
        if not ok:
            raise RuntimeError(f"could not encode a {ext} image")
        (root / f"class{i % classes:03d}" / f"img{i:06d}{ext}").write_bytes(buf.tobytes())
    return root


def _tree_pss_kib(pid: int, per: dict[int, int] | None = None) -> int:
    """PSS (KiB) of ``pid`` and its descendants, from /proc (0 where the kernel says nothing); ``per`` (when
    given) receives each process's own PSS by pid."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    if per is not None:
                        per[p] = int(line.split()[1])
        except OSError:
            pass
    return total


def measure(cmd: list[str], env: dict[str, str], trace: list | None = None) -> dict:
    """Run ``cmd`` under the wrapper; its wall time, peak RSS of the eval process and peak tree PSS (MiB).
    ``trace`` (when given) receives ``[seconds, tree PSS MiB, [each process's PSS MiB, largest first]]`` every
    half second (linear growth and a plateau look different there, where two peaks may not)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: a chatty child never blocks on it
        proc = subprocess.Popen([sys.executable, "-c", WRAPPER, *cmd], env=env, stdout=log, stderr=log, text=True)
        peak_pss = 0
        while proc.poll() is None:
            per: dict[int, int] = {}
            pss = _tree_pss_kib(proc.pid, per)
            peak_pss = max(peak_pss, pss)
            if trace is not None and pss:
                trace.append([round(time.perf_counter() - t0, 1), round(pss / 1024, 1),
                              sorted((round(v / 1024, 1) for v in per.values()), reverse=True)])
            time.sleep(0.5)
        wall = time.perf_counter() - t0
        log.seek(0)
        err = log.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err.strip()[-1500:]}")
    rss = next(int(line.split()[1]) for line in err.splitlines() if line.startswith("MAXRSS_KIB"))
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(rss / 1024, 1),
            "peak_tree_pss_mib": round(peak_pss / 1024, 1)}


def eval_command(folder: Path, out: Path, *, model: str, batch_size: int, workers: int, attack: str,
                 eps: float, input_size: int | None = None) -> list[str]:
    """The ``advkit eval`` command over ``folder`` (every image, checks off; ``input_size`` overrides the
    model's)."""
    sets = [f"data.dataset=imagefolder:{folder}", "data.n=null", f"data.num_workers={workers}",
            *([f"data.input_size={input_size}"] if input_size else []),
            f"models=[{{model: '{model}'}}]", f"batch_size={batch_size}", "checks.enabled=false", "device=cpu",
            f"threat_models=[{{norm: linf, eps: [{eps}], attacks: [{attack}]}}]"]
    return [sys.executable, "-m", "advkit", "eval", "--quiet", "--out", str(out),
            *[a for s in sets for a in ("--set", s)]]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000", help="image counts, in order (the first is the baseline)")
    ap.add_argument("--model", default="timm:resnet18")
    ap.add_argument("--side", type=int, default=256, help="generated image side (cropped to the model's 224)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--attack", default="fgsm")
    ap.add_argument("--eps", type=float, default=4 / 255)
    ap.add_argument("--input-size", type=int, default=None, help="model input side (default: the model's)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads in the eval process")
    ap.add_argument("--limit-mib", type=float, default=300.0, help="the flatness claim: peak difference below")
    ap.add_argument("--out", default=str(RESULTS / "stream_memory.json"))
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    load_before = os.getloadavg()[0]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            folder = make_imagefolder(Path(tmp) / f"set{n}", n, side=args.side)
            cmd = eval_command(folder, Path(tmp) / f"report{n}", model=args.model, batch_size=args.batch_size,
                               workers=args.workers, attack=args.attack, eps=args.eps, input_size=args.input_size)
            trace: list = []
            m = measure(cmd, env, trace)
            m["pss_trace"] = trace[::max(1, len(trace) // 60)]  # about 60 samples over the run
            report = json.loads((Path(tmp) / f"report{n}" / "report.json").read_text())
            m.update(n=n, evaluated=report["data"]["n"], shape=report["data"]["shape"],
                     images_per_s=round(n / m["wall_s"], 2))
            runs.append(m)
            print(f"{n} images: peak RSS {m['peak_rss_mib']} MiB, tree PSS {m['peak_tree_pss_mib']} MiB, "
                  f"{m['wall_s']} s", flush=True)
            shutil.rmtree(folder)
    base, last = runs[0], runs[-1]
    result = {"model": args.model, "input_size": args.input_size, "attack": f"{args.attack} linf eps {args.eps:.4g}",
              "batch_size": args.batch_size,
              "workers": args.workers, "generated_side": args.side, "runs": runs,
              "rss_growth_mib": round(last["peak_rss_mib"] - base["peak_rss_mib"], 1),
              "pss_growth_mib": round(last["peak_tree_pss_mib"] - base["peak_tree_pss_mib"], 1),
              "limit_mib": args.limit_mib,
              "flat": last["peak_rss_mib"] - base["peak_rss_mib"] < args.limit_mib
              and last["peak_tree_pss_mib"] - base["peak_tree_pss_mib"] < args.limit_mib,
              "note": "memory flatness is the claim; a cheap attack (FGSM, checks off) keeps the CPU time sane. "
                      "Timings are loaded (other jobs shared the machine) unless said otherwise."}
    write_result(args.out, "stream_memory", result,
                 machine_extra={"load_avg_1min_before": round(load_before, 2),
                                "load_avg_1min_after": round(os.getloadavg()[0], 2), "torch_threads": args.threads},
                 table=True)
    print(f"growth: RSS {result['rss_growth_mib']} MiB, PSS {result['pss_growth_mib']} MiB "
          f"({'flat' if result['flat'] else 'NOT flat'}); wrote {args.out}")


if __name__ == "__main__":
    main()
