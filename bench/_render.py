"""The full table of one result file (``bench/results/NAME.md``), rendered from its envelope alone.

One renderer per benchmark, keyed by the envelope's ``bench``; each ends with where the figures came from.
Pure functions of the JSON (no torch, no clock), so ``python -m bench.tables`` regenerates the same text every
time and a table can never drift from its file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

NOT_RECORDED = "not recorded"


# ---------------------------------------------------------------------------------------------- helpers
def machine_text(m: dict | str, threads: bool = True) -> str:
    """One line for a recorded machine: a dict as the benchmarks write it, or the sentence an old file kept."""
    if not isinstance(m, dict):
        return str(m)
    parts = [m.get("gpu") or m.get("processor", "?"), f"{m.get('cpu_count', '?')} cores"]
    if threads and m.get("torch_threads") is not None:
        parts.append(f"{m['torch_threads']} torch threads")
    parts.append(f"torch {m.get('torch', '?')}")
    text = ", ".join(parts)
    return f"{text} ({m['note']})" if m.get("note") else text


def source_line(env: dict) -> str:
    """Where a file's figures came from: command, commit, machine, date."""
    return (f"Command: `{env['command']}`; commit {env['commit']}; machine: {machine_text(env['machine'])}; "
            f"date: {env['date']}.")


def pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}%}"


def num(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def mib(b: float) -> str:
    return f"{b / 2 ** 20:.1f} MiB"


def lines(*rows: str) -> str:
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------------------------- renderers
def attack_speed(env: dict) -> str:
    res, mach = env["results"], env["machine"]
    md = ["| config | method | median time | / floor | images/s |", "| --- | --- | --- | --- | --- |"]
    for r in res["configs"]:
        cfg = f"{r['model']} {'x'.join(map(str, r['input']))}, batch {r['batch']}"
        for n, m in r["methods"].items():
            name = f"**{m['label']}**" if n == "advkit" else m["label"]
            md.append(f"| {cfg} | {name} | {m['median_s'] * 1000:.0f} ms | {m['ratio_to_floor']:.3f}x | "
                      f"{m['images_per_s']:.0f} |")
    md += ["", "| config | PGD-10 peak memory / one fwd+bwd | peak RSS: PGD-10 / one fwd+bwd |", "| --- | --- | --- |"]
    for r in res["configs"]:
        m = r["memory"]
        alloc = f"{mib(m['pgd_bytes'])} / {mib(m['fwd_bwd_bytes'])} = {m['ratio']:.2f}x" if "ratio" in m else "n/a"
        rss = (f"{mib(m['rss']['pgd_bytes'])} / {mib(m['rss']['fwd_bwd_bytes'])} = {m['rss']['ratio']:.2f}x"
               if "rss" in m else "n/a")
        md.append(f"| {r['model']}, batch {r['batch']} | {alloc} | {rss} |")
    cuda = isinstance(mach, dict) and str(mach.get("device", "")).startswith("cuda")
    peers = ", ".join(f"{k} {v}" for k, v in res["configs"][0]["peer_versions"].items())
    md.append(f"\nPGD-10, L-inf (eps 0.3 MNIST, 8/255 CIFAR), step 2.5 eps/10, random start; one process, same model "
              f"(random init, eval mode) and batch; warm-up, then median of interleaved rounds. \"params frozen\": "
              f"the peer run with the model's requires_grad off (otherwise foolbox and ART also compute weight "
              f"gradients). Memory: bytes allocated above the live model and batch, peak of PGD-10 against one "
              f"forward+backward ({'CUDA allocator' if cuda else 'CPU allocator, via torch.profiler'}). Peers: "
              f"{peers or 'none'}.")
    return lines(*md)


def train_mnist(env: dict) -> str:
    r = env["results"]
    steps, restarts = r["attack"]["steps"], r["attack"]["restarts"]
    return lines(f"| config | clean | PGD-{steps} ({restarts} restarts) | eps | test images | train time | eval time |",
                 "| --- | --- | --- | --- | --- | --- | --- |",
                 f"| {r['config']} | {r['clean_acc']:.2%} | {r[f'pgd{steps}_r{restarts}_acc']:.2%} | {r['eps']:g} | "
                 f"{r['n_test']} | {r['train_wall_s'] / 60:.1f} min | {r['eval_wall_s'] / 60:.1f} min |")


def train_speed(env: dict) -> str:
    rows = env["results"]["rows"]
    md = ["| model | clean epoch | fgsm_rs epoch | fgsm_rs / clean | PGD-10 epoch | PGD-10 / clean |",
          "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        m, q = r["median_epoch_s"], r["ratio_to_clean"]
        md.append(f"| {r['model']} | {m['clean']:.2f} s | {m['fgsm_rs']:.2f} s | {q['fgsm_rs']:.2f}x | "
                  f"{m['pgd10']:.2f} s | {q['pgd10']:.2f}x |")
    md.append(f"\n{rows[0]['images']} MNIST images per epoch, batch 100, median of {rows[0]['rounds']} interleaved "
              f"rounds.")
    return lines(*md)


def fgsm_rs_seeds(env: dict) -> str:
    md = ["| seed | train time | final: clean / PGD-50x10 | best epoch | best: clean / PGD-50x10 |",
          "| --- | --- | --- | --- | --- |"]
    for r in env["results"]:
        fc, fr = r["final_clean_pgd50x10"]
        bc, br = r["best_clean_pgd50x10"]
        md.append(f"| {r['seed']} | {r['train_s'] / 60:.1f} min | {fc:.1%} / {fr:.1%} | {r['best_epoch']} | "
                  f"{bc:.1%} / {br:.1%} |")
    md.append("\nconfigs/train/mnist_fgsm_rs.yaml, one model per seed; PGD-50 with 10 restarts (step 0.01, eps 0.3) "
              "on the first 1,000 test images, for the final model and the epoch the guard rated best.")
    return lines(*md)


def gan_mnist(env: dict) -> str:
    res = env["results"]
    if "classifier" not in res:  # an older hand-kept comparison of runs, one row per variant
        md = ["| variant | sets | epochs | IS | min class share | FD | FD / floor | s/epoch |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        md += [f"| {r['variant']} | {r['sets']} | {r['epochs']} | {r['is']:.2f} | {r['min_class_share']:.1%} | "
               f"{r['fd']:.1f} | {r['fd_ratio']:.1f}x | {r['s_per_epoch']:.0f} |" for r in res["rows"]]
        if res.get("note"):
            md.append(f"\n{res['note']}.")
        return lines(*md)
    clf, ref, t = res["classifier"], res["reference"], res["targets"]
    d_eps = res["rows"][0].get("d_eps", 0.1) if res["rows"] else 0.1
    out = [f"Domain classifier: `{Path(clf['path']).name}` ({clf['test_acc']:.2%} MNIST test accuracy, "
           f"{clf['feature_dim']} features). {res['n_samples']} samples per config against the first "
           f"{ref['n_test']} test images; IS of real test digits {ref['is_test']:.2f}; FD floor (train vs test) "
           f"{ref['fd_floor']:.4f}, KID floor {ref['kid_floor']:.5f}.", "",
           f"Targets (`{res['target_config']}` only): IS >= {t['is_min']}, min class share >= "
           f"{t['min_class_share']:.0%}, FD/floor <= {t['fd_ratio_max']:g}, <= {t['epochs_max']} epochs.", "",
           f"Config overrides (every config): {', '.join(f'`{x}`' for x in res.get('sets', [])) or 'none'}.", "",
           "| config | loss | epochs | s/epoch | IS | min class share | FD | FD floor | FD/floor | KID | "
           f"D acc clean / PGD-20 at eps {d_eps:g} | dg~FD Spearman | targets |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in res["rows"]:
        out.append(f"| {r['config']} | {r['loss']} | {r['epochs']} | {r['s_per_epoch']:.1f} | {r['is']:.2f} | "
                   f"{r['min_class_share']:.1%} | {r['fd']:.4f} | {r['fd_floor']:.4f} | {r['fd_ratio']:.1f} | "
                   f"{r['kid']:.5f} | {r['d_clean_acc']:.1%} / {r['d_pgd_acc']:.1%} | "
                   f"{'-' if r['dg_fd_spearman'] is None else format(r['dg_fd_spearman'], '+.2f')} | "
                   f"{gan_targets(r)} |")
    per = [(r["config"], r["per_epoch"]) for r in res["rows"] if r.get("per_epoch")]
    for name, epochs in per:
        out.append(f"\n`{name}` per epoch: IS " + ", ".join(f"{e['is']:.2f}" for e in epochs)
                   + "; FD " + ", ".join(f"{e['fd']:.1f}" for e in epochs) + ".")
    return lines(*out)


def gan_targets(row: dict) -> str:
    """The targets cell of a GAN row: met, not met (which), or - for configs without targets."""
    if row.get("targets") is None:
        return "-"
    missed = [k for k in ("is", "min_class_share", "fd_ratio", "epochs") if not row["targets"][k]]
    return "met" if row["targets"]["met"] else f"not met ({', '.join(missed)})"


def gan_judge_sensitivity(env: dict) -> str:
    res = env["results"]
    md = ["| real digits | FD | FD / floor | IS |", "| --- | --- | --- | --- |"]
    md += [f"| {r['variant']} | {r['fd']:.2f} | {r['fd_ratio']:.1f}x | {r['is']:.2f} |" for r in res["rows"]]
    md.append(f"\n{res['n']} real digits per variant, judged by `{Path(res['classifier']['path']).name}` against "
              f"the test digits.")
    return lines(*md)


def detect_mnist(env: dict) -> str:
    res = env["results"]
    md = ["| detector | clean AUC | robust AUC 4/255 | 8/255 | 16/255 | JPEG q30 AUC | blur 2 AUC | targets | time |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in res["rows"]:
        ra, la = r["robust_auc"], r["laundering_auc"]
        md.append(f"| {r['config']} ({r['train_objective']}) | {r['clean_auc']:.4f} | {num(ra.get('4/255'))} | "
                  f"{num(ra.get('8/255'))} | {num(ra.get('16/255'))} | {num(la.get('jpeg_q30'))} | "
                  f"{num(la.get('blur_s2'))} | {'met' if r['targets']['met'] else 'not met'} | "
                  f"{r['wall_s'] / 60:.1f} min |")
    md.append(f"\nGenerator: {res['generator']}.")
    return lines(*md)


def detect_cross_generator(env: dict) -> str:
    res = env["results"]
    train, names = res["train_generator"], list(res["generators"])
    md = ["| detector (trained on " + train + ") | " + " | ".join(
        f"{n}{' (train)' if n == train else ''} AUC / AP" for n in names) + " | time |",
          "| --- |" + " --- |" * (len(names) + 1)]
    for r in res["rows"]:
        cells = [f"{r['per_generator'][n]['auc']:.4f} / {r['per_generator'][n]['ap']:.4f}" for n in names]
        md.append(f"| {r['detector']} | " + " | ".join(cells)
                  + f" | {r['train_s'] / 60:.1f} + {r['eval_s'] / 60:.1f} min |")
    md.append("\nReal MNIST test digits against each generator's fakes (fresh z). Generators: "
              + "; ".join(f"{n} = {p}" for n, p in res["generators"].items()))
    return lines(*md)


def detect_speed(env: dict) -> str:
    r = env["results"]
    return lines("| images | model | forward (median) | advkit detect (median) | ratio | images/s |",
                 "| --- | --- | --- | --- | --- | --- |",
                 f"| {r['n']} x {r['size']}px | {r['model']} | {r['forward_median_s']:.2f} s | "
                 f"{r['detect_median_s']:.2f} s | **{r['ratio']:.2f}x** | {r['detect_images_per_s']:.0f} |",
                 "", f"Batch {r['batch_size']}, {r['workers']} decoding worker(s), median of {r['rounds']} rounds; "
                 f"target <= {r['target']}x.")


def eval_speed(env: dict) -> str:
    res = env["results"]
    md = ["| model | eps | worst case (cascade) | worst case (naive) | cascade | naive | speed-up | MultiAttack | "
          "speed-up |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in res["rows"]:
        ma = r.get("torchattacks_multiattack")
        md.append(f"| {r['model']} | {', '.join(f'{e:g}' for e in r['eps'])} | "
                  f"{' / '.join(f'{a:.1%}' for a in r['cascade']['worst_case'])} | "
                  f"{' / '.join(f'{a:.1%}' for a in r['naive']['worst_case'])} | {r['cascade']['s']:.1f} s | "
                  f"{r['naive']['s']:.1f} s | {r['speedup_vs_naive']:.2f}x | "
                  + (f"{ma['s']:.1f} s | {r['speedup_vs_multiattack']:.2f}x |" if ma else "- | - |"))
    mem = res.get("memory") or []
    mem_txt = ""
    if len(mem) > 1:
        mem_txt = (f" Peak RSS (FGSM + PGD-10): {mem[0]['peak_rss_mib']:.0f} MiB at {mem[0]['n']} samples, "
                   f"{mem[1]['peak_rss_mib']:.0f} MiB at {mem[1]['n']} ({res['memory_ratio']:.2f}x).")
    r0 = res["rows"][0] if res["rows"] else {"suite": [], "n": "?"}
    md.append(f"\nSuite {', '.join(r0['suite'])} on {r0['n']} MNIST test images.{mem_txt}")
    return lines(*md)


def detect_report(env: dict) -> str:
    res = env["results"]
    md = [f"Model `{res['model']}` on {res['data']} ({res['n']} samples).", "",
          "| condition | images | AUC | AP | acc | fakes called real |", "| --- | --- | --- | --- | --- | --- |"]
    md += [f"| {c['condition']} | {c['images']} | {c['auc']:.4f} | {c['ap']:.4f} | {pct(c['acc'])} | "
           f"{pct(c['fakes_called_real'])} |" for c in res["conditions"]]
    md.append(f"\nChecks: {res.get('checks', NOT_RECORDED)}; gates: {res.get('gates', NOT_RECORDED)}; time: "
              f"{res.get('time', NOT_RECORDED)}")
    if res.get("notes"):
        md.append(f"\n{res['notes']}")
    return lines(*md)


def stream_memory(env: dict) -> str:
    res = env["results"]
    md = ["| images | evaluated | peak RSS (eval process) | peak PSS (process tree) | wall | images/s |",
          "| --- | --- | --- | --- | --- | --- |"]
    for r in res["runs"]:
        md.append(f"| {r['n']} | {r['evaluated']} | {r['peak_rss_mib']:.0f} MiB | {r['peak_tree_pss_mib']:.0f} MiB | "
                  f"{r['wall_s']:.0f} s | {r['images_per_s']:.2f} |")
    md.append(f"\nGrowth from the first to the last size: RSS {res['rss_growth_mib']:+.0f} MiB, PSS "
              f"{res['pss_growth_mib']:+.0f} MiB (limit {res['limit_mib']:.0f} MiB: "
              f"{'flat' if res['flat'] else 'NOT flat'}). `advkit eval` on generated {res['generated_side']} px JPEGs "
              f"(imagefolder), {res['model']}, {res['attack']}, batch {res['batch_size']}, {res['workers']} "
              f"decoding workers, checks off. {res['note']}")
    return lines(*md)


def stream_throughput(env: dict) -> str:
    res = env["results"]
    ips = res["images_per_s"]
    md = ["| data | images/s |", "| --- | --- |", f"| streamed (imagefolder, {res['workers']} workers) | "
          f"{ips['streamed']:.2f} |", f"| the same tensors in memory | {ips['in_memory']:.2f} |",
          f"\nStreamed / in memory: **{res['ratio']:.3f}x** (target {res['target']}x: "
          f"{'met' if res['meets_target'] else 'NOT met'}); same per-sample outcomes: {res['same_outcomes']}. "
          f"{res['attack']} on {res['n']} generated {res['generated_side']} px JPEGs cropped to "
          f"{res['input_size']} px, {res['model']}, batch {res['batch_size']}, "
          f"{res.get('warmup', 0)} untimed warm-up run(s) of each, then the median of {res['rounds']} "
          f"round(s) in alternating order. {res['note']}"]
    return lines(*md)


def _quick(res: dict) -> str:
    """The warning a smoke run's table ends with ('' for a real run)."""
    return " Quick (smoke) settings: the figures mean nothing." if res.get("quick") else ""


def _ci(x: float, ci: list | None) -> str:
    return pct(x, 2) + (f" [{ci[0] * 100:.2f}, {ci[1] * 100:.2f}]" if ci else "")


def mnist_autoattack(env: dict) -> str:
    res = env["results"]
    rows = res["rows"]
    md = ["| config | eps | test images | clean | PGD-50 x10 | AutoAttack | AutoAttack - PGD |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        gap = (r["autoattack_acc"] - r["pgd_acc"]) * 100
        md.append(f"| `{r['config']}` | {r['eps']:g} | {r['n']} | {_ci(r['clean_acc'], r['clean_acc_ci'])} | "
                  f"{_ci(r['pgd_acc'], r['pgd_acc_ci'])} | {_ci(r['autoattack_acc'], r['autoattack_acc_ci'])} | "
                  f"{gap:+.2f} points |")
    members = ", ".join(f"`{r['config']}`: " + " / ".join(f"{k} {v['fooled']}" for k, v in
                                                          r["autoattack_members"].items()) for r in rows)
    md.append(f"\nRobust accuracy with 95% Wilson intervals [lo, hi]. Each config trained by "
              f"`advkit train classifier -c configs/train/NAME.yaml --set seed={rows[0]['seed'] if rows else 0}`, "
              f"then evaluated by `advkit eval`: PGD-50 with 10 restarts (step 0.01) on every image, and the "
              f"`autoattack` preset (advkit's APGD-CE, APGD-T, FAB-T and Square-5000, each on the images still "
              f"standing, as AutoAttack's standard run). Images each member fooled: {members}."
              + _quick(res))
    return lines(*md)


def autoattack(env: dict) -> str:
    res = env["results"]
    md = ["| attack | advkit | reference | advkit - reference | advkit time | reference time |",
          "| --- | ---: | ---: | ---: | ---: | ---: |"]
    rows = [("`autoattack` / standard", res["advkit"], res["reference"])]
    rows += [(name, r["advkit"], r["reference"]) for name, r in res.get("per_member", {}).items()]
    for label, a, b in rows:
        gap = (a["robust_acc"] - b["robust_acc"]) * 100
        md.append(f"| {label} | {pct(a['robust_acc'], 2)} | {pct(b['robust_acc'], 2)} | {gap:+.2f} points | "
                  f"{a['time_s']:.1f} s | {b['time_s']:.1f} s |")
    md.append(f"\nRobust accuracy on the first {res['n']} images of the {res.get('dataset', 'mnist')} test set "
              f"(clean {pct(res['clean_acc'], 2)}), {res['norm']} eps {res['eps']:.6g}, model `{res['model']}`: "
              f"advkit's `autoattack` preset against the reference AutoAttack ({res['reference']['source']}) in "
              f"one process; a member's row runs it alone on both sides with the standard run's settings. Time "
              f"advkit / reference (preset vs standard): {res['time_ratio']:.3f} (target <= {res['target_ratio']})."
              + _quick(res))
    return lines(*md)


def test_time(env: dict) -> str:
    res = env["results"]
    counts = ", ".join(f"{v} {k}" for k, v in res["counts"].items())
    m = env["machine"]
    return lines("| command | exit | wall time | tests |", "| --- | ---: | ---: | --- |",
                 f"| `{res['command']}` | {res['exit_code']} | {res['wall_s']:.0f} s ({res['wall_s'] / 60:.1f} min) | "
                 f"{counts} |",
                 f"\nTarget {res['target_s']:.0f} s: {'met' if res['meets_target'] else 'NOT met'}. Load average "
                 f"(1, 5, 15 min) before {m.get('load_avg_before')}, after {m.get('load_avg_after')}.")


RENDERERS: dict[str, Callable[[dict], str]] = {
    "attack_speed": attack_speed, "train_mnist": train_mnist, "train_speed": train_speed,
    "fgsm_rs_seeds": fgsm_rs_seeds, "gan_mnist": gan_mnist, "gan_judge_sensitivity": gan_judge_sensitivity,
    "detect_mnist": detect_mnist, "detect_cross_generator": detect_cross_generator, "detect_speed": detect_speed,
    "eval_speed": eval_speed, "detect_report": detect_report, "stream_memory": stream_memory,
    "stream_throughput": stream_throughput, "mnist_autoattack": mnist_autoattack,
    "test_time": test_time,
    "autoattack": autoattack}


def render_file(env: dict) -> str | None:
    """The markdown of one result file (its table, then where it came from); None for an unknown bench."""
    fn = RENDERERS.get(env["bench"])
    if fn is None:
        return None
    return fn(env) + "\n" + source_line(env) + "\n"
