"""Tables generated from the result files, never typed: ``bench/README.md``, ``bench/results/NAME.md`` and the
marked blocks of the docs.

    python -m bench.tables                      # bench/README.md, results/*.md, blocks in README.md and docs/*.md
    python -m bench.tables docs/robustness.md   # the blocks of these markdown files instead
    python -m bench.tables --check              # exit 1 when a generated file is out of date (writes nothing)

In a markdown file, the text between ``<!-- bench:ID -->`` and ``<!-- /bench:ID -->`` is replaced by the table
with that ID: ``headline`` (the key figures, each row linking its file), one per benchmark (``attack-speed``,
``train-mnist``, ``train-speed``, ``fgsm-rs-seeds``, ``eval-speed``, ``gan-mnist``, ``gan-judge``, ``detect``,
``detect-xgen``, ``detect-speed``, ``detect-report``), or ``file:NAME`` (the full table of results/NAME.json).
Links are written relative to the file they land in.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from advkit.runtime.io import atomic_write_text
from bench import _render as R
from bench._common import REPO, RESULTS, read_result

# an opening marker starts a line, so prose that quotes the syntax inline (`<!-- bench:ID -->`) is left alone
BLOCK = re.compile(r"^(<!-- bench:(?P<id>[A-Za-z0-9_.:-]+) -->)(?P<body>.*?)(<!-- /bench:(?P=id) -->)", re.S | re.M)


@dataclass(frozen=True)
class Entry:
    """One result file and its envelope."""

    path: Path
    env: dict

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def quick(self) -> bool:
        res = self.env["results"]
        return isinstance(res, dict) and bool(res.get("quick"))


@dataclass(frozen=True)
class Section:
    """The summary table of one benchmark: a row or more per result file, then the file it came from."""

    id: str
    bench: str
    title: str
    about: str  # what the columns mean
    header: tuple[str, ...]
    rows: Callable[[dict], list[list[str]]]


def load_results(folder: Path) -> list[Entry]:
    """Every ``*.json`` envelope in ``folder``, sorted by name.

    Raises:
        SystemExit: a file that is not an envelope, named with what is missing.
    """
    try:
        return [Entry(p, read_result(p)) for p in sorted(Path(folder).glob("*.json"))]
    except ValueError as e:
        raise SystemExit(str(e)) from None


def link(entry: Entry, base: Path) -> str:
    rel = Path(os.path.relpath(entry.path, base)).as_posix()
    return f"[{entry.path.name}]({rel})" + (" (quick)" if entry.quick else "")


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------- rows
def _attack_speed(env: dict) -> list[list[str]]:
    rows = []
    for c in env["results"]["configs"]:
        m, t, mem = c["methods"], c["targets"], c["memory"]
        peer = t.get("fastest_peer")
        rows.append([f"{c['model']} {'x'.join(map(str, c['input']))}, batch {c['batch']}",
                     f"{m['advkit']['ratio_to_floor']:.3f}x", f"{m['advkit']['images_per_s']:.0f}",
                     f"{m[peer]['label']} ({m[peer]['ratio_to_floor']:.3f}x)" if peer else "-",
                     R.num(t.get("advkit_vs_fastest_peer"), ".3f"),
                     f"{mem['ratio']:.2f}x" if "ratio" in mem else "-"])
    return rows


def _robust_key(res: dict) -> tuple[str, str]:
    a = res["attack"]
    return f"pgd{a['steps']}_r{a['restarts']}_acc", f"PGD-{a['steps']} x{a['restarts']}"


def _train_mnist(env: dict) -> list[list[str]]:
    r = env["results"]
    key, label = _robust_key(r)
    return [[r["config"], str(r["n_test"]), f"{r['eps']:g}", f"{r['clean_acc']:.2%}", f"{r[key]:.2%} ({label})",
             f"{r['train_wall_s'] / 60:.1f} min", f"{r['eval_wall_s'] / 60:.1f} min"]]


def _train_speed(env: dict) -> list[list[str]]:
    return [[r["model"], str(r["images"]), f"{r['median_epoch_s']['clean']:.2f} s",
             f"{r['ratio_to_clean']['fgsm_rs']:.2f}x", f"{r['ratio_to_clean']['pgd10']:.2f}x"]
            for r in env["results"]["rows"]]


def _fgsm_rs_seeds(env: dict) -> list[list[str]]:
    return [[str(r["seed"]), f"{r['final_clean_pgd50x10'][0]:.1%}", f"{r['final_clean_pgd50x10'][1]:.1%}",
             str(r["best_epoch"]), f"{r['best_clean_pgd50x10'][1]:.1%}"] for r in env["results"]]


def _eval_speed(env: dict) -> list[list[str]]:
    return [[r["model"], str(r["n"]), ", ".join(f"{e:g}" for e in r["eps"]), ", ".join(r["suite"]),
             " / ".join(f"{a:.1%}" for a in r["cascade"]["worst_case"]), f"{r['cascade']['s']:.1f} s",
             f"{r['speedup_vs_naive']:.2f}x", R.num(r.get("speedup_vs_multiattack"), ".2f") + "x"
             if r.get("speedup_vs_multiattack") is not None else "-"] for r in env["results"]["rows"]]


def _overrides(sets: list[str] | str) -> str:
    if isinstance(sets, str):
        return sets
    kept = [s for s in sets if not s.startswith("epochs=")]  # the epochs have their own column
    return ", ".join(f"`{s}`" for s in kept) or "none"


def _gan_mnist(env: dict) -> list[list[str]]:
    res = env["results"]
    if "classifier" not in res:  # an older hand-kept comparison, one row per variant
        return [[r["variant"], _overrides(r["sets"]), str(r["epochs"]), f"{r['is']:.2f}", f"{r['min_class_share']:.1%}",
                 f"{r['fd_ratio']:.1f}x", f"{r['s_per_epoch']:.0f}", "-"] for r in res["rows"]]
    return [[r["config"], _overrides(res.get("sets", [])), str(r["epochs"]), f"{r['is']:.2f}",
             f"{r['min_class_share']:.1%}", f"{r['fd_ratio']:.1f}x", f"{r['s_per_epoch']:.0f}", R.gan_targets(r)]
            for r in res["rows"]]


def _gan_judge(env: dict) -> list[list[str]]:
    return [[r["variant"], f"{r['fd']:.2f}", f"{r['fd_ratio']:.1f}x", f"{r['is']:.2f}"] for r in env["results"]["rows"]]


def _detect(env: dict) -> list[list[str]]:
    rows = []
    for r in env["results"]["rows"]:
        ra, la = r["robust_auc"], r["laundering_auc"]
        rows.append([f"{r['config']} ({r['train_objective']})", f"{r['clean_auc']:.4f}",
                     " / ".join(R.num(ra.get(e)) for e in ("4/255", "8/255", "16/255")),
                     R.num(la.get("jpeg_q30")), R.num(la.get("blur_s2")),
                     "met" if r["targets"]["met"] else "not met"])
    return rows


def _detect_xgen(env: dict) -> list[list[str]]:
    res = env["results"]
    train = res["train_generator"]
    rows = []
    for r in res["rows"]:
        per = r["per_generator"]
        others = {g: v for g, v in per.items() if g != train}
        worst = min(others, key=lambda g: others[g]["ap"]) if others else None
        rows.append([r["detector"], train, f"{per[train]['auc']:.4f} / {per[train]['ap']:.4f}",
                     str(len(others)),
                     f"{others[worst]['auc']:.4f} / {others[worst]['ap']:.4f} ({worst})" if worst else "-"])
    return rows


def _detect_speed(env: dict) -> list[list[str]]:
    r = env["results"]
    return [[f"{r['n']} x {r['size']}px", r["model"], f"{r['forward_median_s']:.2f} s", f"{r['detect_median_s']:.2f} s",
             f"{r['ratio']:.2f}x", f"{r['detect_images_per_s']:.0f}"]]


def _first_run(env: dict) -> list[list[str]]:
    r, m = env["results"], env["machine"]
    return [[f"`{r['command']}`", f"{r['median_cold_s']:.0f} s", f"{r['median_warm_s']:.0f} s", str(r["rounds"]),
             f"{m.get('load_avg_1min_before', float('nan')):.1f}"]]


def _detect_report(env: dict) -> list[list[str]]:
    r = env["results"]
    return [[r["model"], c["condition"], f"{c['auc']:.4f}", f"{c['ap']:.4f}", R.pct(c["acc"]),
             R.pct(c["fakes_called_real"])] for c in r["conditions"]]


SECTIONS = (
    Section("attack-speed", "attack_speed", "PGD-10 speed (`python -m bench.attack_speed`)",
            "Time of advkit's PGD-10 against the floor (10 forward + backward passes w.r.t. the input, nothing "
            "else: what any PGD-10 must spend) and against its peers, in one process on the same model and batch, "
            "median of interleaved rounds. *advkit / floor*: advkit's median over the floor's; *fastest peer*: "
            "the fastest of torchattacks, foolbox and ART (each also run with the parameters frozen), with its own "
            "ratio to the floor; *PGD memory / fwd+bwd*: peak bytes of PGD-10 over one forward + backward.",
            ("config", "advkit / floor", "advkit images/s", "fastest peer (/ floor)", "advkit / fastest peer",
             "PGD memory / fwd+bwd"), _attack_speed),
    Section("train-mnist", "train_mnist", "MNIST adversarial training (`python -m bench.train_mnist`)",
            "A classifier trained by a shipped config, then attacked on the MNIST test set. *clean*: test "
            "accuracy; *robust*: accuracy under L-inf PGD (steps x random restarts, step 0.01) at *eps*, the "
            "worst case over the restarts; *train* and *eval*: wall time of training and of that evaluation.",
            ("config", "test images", "eps", "clean", "robust", "train", "eval"), _train_mnist),
    Section("train-speed", "train_speed", "Adversarial training throughput (`python -m bench.train_speed`)",
            "One epoch of the same model and data per objective, interleaved, median of the rounds. *clean epoch*: "
            "seconds per clean epoch; the ratios are the fgsm_rs (one attack step: two forward/backward passes, "
            "so 2x is the floor) and PGD-10 epochs over the clean one.",
            ("model", "images/epoch", "clean epoch", "fgsm_rs / clean", "PGD-10 / clean"), _train_speed),
    Section("fgsm-rs-seeds", "fgsm_rs_seeds",
            "Seed spread of fast adversarial training (`python -m bench.fgsm_rs_seeds`)",
            "configs/train/mnist_fgsm_rs.yaml once per seed; PGD-50 with 10 restarts at eps 0.3 on the first 1,000 "
            "test images. *final*: the last epoch's model; *best*: the epoch the catastrophic-overfitting guard "
            "rated best.",
            ("seed", "final clean", "final PGD-50x10", "best epoch", "best PGD-50x10"), _fgsm_rs_seeds),
    Section("eval-speed", "eval_speed", "Worst-case evaluation speed (`python -m bench.eval_speed`)",
            "Worst-case robust accuracy over an attack suite at each eps. *cascade*: advkit's harness, each attack "
            "only on the samples still standing; *speed-up*: the naive way (every attack on every sample) over "
            "the cascade, for the same worst case; *vs MultiAttack*: torchattacks' MultiAttack over the cascade.",
            ("model", "images", "eps", "suite", "worst case (cascade)", "cascade", "speed-up", "vs MultiAttack"),
            _eval_speed),
    Section("gan-mnist", "gan_mnist", "MNIST GANs (`python -m bench.gan_mnist`)",
            "Samples of each trained generator judged in the features of an MNIST classifier (not Inception). "
            "*IS*: Inception-style score (10 is perfect, real test digits ~9.6-9.9); *min class share*: the rarest "
            "digit's share of the samples (mode collapse shows here); *FD / floor*: Frechet distance to the test "
            "digits over that of real training digits; *s/epoch*: training wall time per epoch; *targets*: "
            "IS >= 9, min class share >= 5%, FD / floor <= 5 within 5 epochs (the target config only).",
            ("config", "overrides", "epochs", "IS", "min class share", "FD / floor", "s/epoch", "targets"),
            _gan_mnist),
    Section("gan-judge", "gan_judge_sensitivity", "The GAN judge on altered real digits "
            "(`python -m bench.gan_judge_sensitivity`)",
            "Real training digits, as they are and lightly altered, judged like a generator's samples: what the FD "
            "target asks of a generator. *FD / floor*: as in the GAN table; *IS*: Inception-style score.",
            ("real digits", "FD", "FD / floor", "IS"), _gan_judge),
    Section("detect", "detect_mnist", "MNIST real-vs-fake detectors (`python -m bench.detect_mnist`)",
            "Detectors trained on real MNIST digits against one DCGAN generator's samples. *clean AUC*: ROC AUC "
            "on the test set; *robust AUC*: AUC when fakes are pushed towards \"real\" by targeted PGD-20 at 4, 8 "
            "and 16/255; *JPEG q30* and *blur 2*: AUC after laundering both classes; *targets*: the issue's "
            "(plain: clean >= 0.99; hardened: robust at 16/255 >= 0.9 with clean >= 0.98).",
            ("detector (objective)", "clean AUC", "robust AUC 4 / 8 / 16 /255", "JPEG q30 AUC", "blur 2 AUC",
             "targets"), _detect),
    Section("detect-xgen", "detect_cross_generator", "Cross-generator detection "
            "(`python -m bench.detect_cross_generator`)",
            "A detector trained on one generator's fakes, scored on real test digits against fresh fakes of its "
            "own generator and of others. *AUC / AP*: ROC AUC and average precision; *worst other*: the other "
            "generator with the lowest AP.",
            ("detector", "trained on", "own generator AUC / AP", "other generators", "worst other AUC / AP"),
            _detect_xgen),
    Section("detect-speed", "detect_speed", "`advkit detect` throughput (`python -m bench.detect_speed`)",
            "A folder of images scored by `advkit detect` (decoding included) against the model's forward pass "
            "over the same images already in memory; medians of the rounds. *ratio*: detect over forward "
            "(target <= 1.3x).",
            ("images", "model", "forward", "advkit detect", "ratio", "images/s"), _detect_speed),
    Section("first-run", "first_run", "First-run times (`python -m bench.first_run`)",
            "Wall time of the README's main command in a fresh process. *cold*: empty cache, so it first trains "
            "and caches the default MNIST LeNet; *warm*: the same command again; medians of the rounds. *load*: "
            "the machine's 1-minute load average before the runs (2 cores: above 2 means other work shared them).",
            ("command", "cold (trains the default model)", "warm", "rounds", "load"), _first_run),
    Section("detect-report", "detect_report", "Detection reports kept as results",
            "Figures of an `advkit` detection report (scores P(fake)). *condition*: clean, after laundering both "
            "classes, or under targeted PGD pushing fakes to \"real\"; *acc*: accuracy at the 0.5 threshold; "
            "*fakes called real*: the share of fakes the attack got past the detector.",
            ("model", "condition", "AUC", "AP", "acc", "fakes called real"), _detect_report),
)
BY_ID = {s.id: s for s in SECTIONS}


# ---------------------------------------------------------------------------------------------- headline
def _h_train(env: dict) -> tuple[str, str]:
    r = env["results"]
    key, label = _robust_key(r)
    return (f"MNIST, `{r['config']}`, {r['n_test']} test images",
            f"clean {r['clean_acc']:.2%}, {label} {r[key]:.2%} at eps {r['eps']:g}")


def _h_attack(env: dict) -> tuple[str, str]:
    c = env["results"]["configs"][0]
    a = c["methods"]["advkit"]
    return (f"PGD-10, {c['model']}, batch {c['batch']}",
            f"{a['ratio_to_floor']:.3f}x the floor of 10 fwd+bwd, {a['images_per_s']:.0f} images/s")


def _h_train_speed(env: dict) -> tuple[str, str]:
    r = env["results"]["rows"][0]
    return (f"fgsm_rs training epoch, {r['model']}", f"{r['ratio_to_clean']['fgsm_rs']:.2f}x a clean epoch")


def _h_eval(env: dict) -> tuple[str, str]:
    r = env["results"]["rows"][0]
    return (f"worst case over {', '.join(r['suite'])}, {r['model']}, eps {', '.join(f'{e:g}' for e in r['eps'])}",
            f"cascade {r['speedup_vs_naive']:.2f}x faster than every attack on every sample")


def _h_gan(env: dict) -> tuple[str, str]:
    res = env["results"]
    r = res["rows"][0]
    return (f"`{r['config']}`, {_overrides(res.get('sets', []))}, {r['epochs']} epochs",
            f"IS {r['is']:.2f}, rarest class {r['min_class_share']:.1%}, FD {r['fd']:.1f} = {r['fd_ratio']:.1f}x "
            f"the floor")


def _h_detect(env: dict) -> tuple[str, str]:
    rows = env["results"]["rows"]
    r = next((x for x in rows if x["train_objective"] != "clean"), rows[-1])
    return (f"MNIST vs DCGAN, `{r['config']}` ({r['train_objective']})",
            f"clean AUC {r['clean_auc']:.4f}, {R.num(r['robust_auc'].get('16/255'))} under PGD-20 at 16/255")


def _h_detect_speed(env: dict) -> tuple[str, str]:
    r = env["results"]
    return (f"`advkit detect`, {r['n']} x {r['size']}px, {r['model']}",
            f"{r['ratio']:.2f}x the forward pass, {r['detect_images_per_s']:.0f} images/s")


def _h_report(env: dict) -> tuple[str, str]:
    r = env["results"]
    clean = r["conditions"][0]
    worst = min(r["conditions"], key=lambda c: c["auc"])
    return (f"real vs GAN faces, `{r['model']}`",
            f"clean AUC {clean['auc']:.4f}, {worst['auc']:.4f} under {worst['condition']}")


def _h_aa_reference(env: dict) -> tuple[str, str]:
    r = env["results"]
    gaps = [abs(m["diff_points"]) for m in r.get("per_member", {}).values()]
    members = f"; each member within {max(gaps):.2f} points" if gaps else ""
    return (f"AutoAttack against the reference, {r['dataset']} small CNN, {r['n']} test images, eps {r['eps']:.4g}",
            f"advkit {r['advkit']['robust_acc']:.2%}, reference {r['reference']['robust_acc']:.2%}{members}")


def _h_mnist_aa(env: dict) -> tuple[str, str]:
    rows = env["results"]["rows"]
    return (f"MNIST, every shipped adversarially trained config, {rows[0]['n']} test images, eps 0.3",
            "; ".join(f"`{r['config']}` AutoAttack {r['autoattack_acc']:.2%} (PGD-50 x10 {r['pgd_acc']:.2%})"
                      for r in rows))


def _h_stream(env: dict) -> tuple[str, str]:
    r = env["results"]
    return (f"`advkit eval`, PGD-10, {r['model']}, {r['n']} streamed {r['input_size']} px images",
            f"{r['ratio']:.3f}x the rate on the same tensors in memory, {r['images_per_s']['streamed']:.2f} images/s")


def _h_test_time(env: dict) -> tuple[str, str]:
    r = env["results"]
    return ("the README's test command", f"{r['counts'].get('passed', 0)} tests passed in {r['wall_s'] / 60:.1f} min")


# (area, result file, figures); a file that is not there leaves its row out
HEADLINE: tuple[tuple[str, str, Callable[[dict], tuple[str, str]]], ...] = (
    ("robust accuracy", "train_mnist_fgsm_rs", _h_train),
    ("robust accuracy", "mnist_autoattack", _h_mnist_aa),
    ("attack strength", "autoattack_cifar10", _h_aa_reference),
    ("attack speed", "attack_speed_mnist_quiet", _h_attack),
    ("training speed", "train_speed", _h_train_speed),
    ("evaluation speed", "eval_speed_grid", _h_eval),
    ("GAN", "gan_mnist_deep2_b16_ema", _h_gan),
    ("detection", "detect_mnist", _h_detect),
    ("detection", "detect_faces_hardened", _h_report),
    ("detection speed", "detect_speed", _h_detect_speed),
    ("streaming", "stream_throughput", _h_stream),
    ("test suite", "test_time", _h_test_time),
)


def headline(entries: list[Entry], base: Path) -> str:
    by_name = {e.name: e for e in entries}
    rows = [[area, *fn(by_name[name].env), link(by_name[name], base)]
            for area, name, fn in HEADLINE if name in by_name]
    return table(["", "setting", "figure", "result"], rows)


# ---------------------------------------------------------------------------------------------- documents
def section_table(section: Section, entries: list[Entry], base: Path) -> str:
    rows = [[*row, link(e, base)] for e in entries if e.env["bench"] == section.bench
            for row in section.rows(e.env)]
    if not rows:
        return "_No result files._\n"
    return table([*section.header, "result"], rows)


def provenance(section: Section, entries: list[Entry], base: Path) -> str:
    rows = [[link(e, base), f"`{e.env['command']}`", e.env["commit"], R.machine_text(e.env["machine"]),
             e.env["date"]] for e in entries if e.env["bench"] == section.bench]
    return table(["result", "command", "commit", "machine", "date"], rows) if rows else ""


def block(block_id: str, entries: list[Entry], base: Path) -> str:
    """The table a ``<!-- bench:ID -->`` block gets, links relative to ``base``.

    Raises:
        KeyError: an unknown ID (the message lists the valid ones).
    """
    if block_id == "headline":
        return headline(entries, base)
    if block_id in BY_ID:
        return section_table(BY_ID[block_id], entries, base)
    if block_id.startswith("file:"):
        found = [e for e in entries if e.name == block_id[5:]]
        if found and (text := R.render_file(found[0].env)) is not None:
            return text
    raise KeyError(f"unknown bench table {block_id!r}; valid: headline, {', '.join(BY_ID)}, or file:NAME for a "
                   f"result file NAME.json")


def fill_blocks(text: str, entries: list[Entry], base: Path, unknown: list[str] | None = None) -> str:
    """``text`` with every marked block's content replaced by its table.

    A block whose ID names no table (a figure no result file backs yet) is left as it is, and its error
    message appended to ``unknown`` when given.
    """
    def fill(m: re.Match) -> str:
        try:
            return f"{m.group(1)}\n{block(m.group('id'), entries, base)}{m.group(4)}"
        except KeyError as e:
            if unknown is not None:
                unknown.append(e.args[0])
            return m.group(0)

    return BLOCK.sub(fill, text)


def bench_readme(entries: list[Entry], base: Path) -> str:
    out = ["# Benchmark results", "",
           "Generated by `python -m bench.tables` from the files in [results/](results/); do not edit by hand. "
           "Each result file is one run in one envelope: `bench` (the module), `command` (how it was run), "
           "`commit` (the code it ran, `+dirty` with local changes), `machine`, `date` (UTC) and `results` (the "
           "benchmark's own figures). Files from before the envelope say `not recorded` where they kept no such "
           "fact. Each file also has its full table in `results/NAME.md`, generated from the same JSON.", "",
           "## Headline", "", headline(entries, base)]
    for s in SECTIONS:
        if not any(e.env["bench"] == s.bench for e in entries):
            continue
        out += [f"## {s.title}", "", s.about, "", section_table(s, entries, base), "Where each file came from:", "",
                provenance(s, entries, base)]
    return "\n".join(out).rstrip("\n") + "\n"


def generate(results: Path, readme: Path, markdown: list[Path]) -> dict[Path, str]:
    """Every generated file's path and the text it should hold now."""
    entries = load_results(results)
    out = {readme: bench_readme(entries, readme.parent)}
    for e in entries:
        text = R.render_file(e.env)
        if text is not None:
            out[e.path.with_suffix(".md")] = text
    for md in markdown:
        unknown: list[str] = []
        out[md] = fill_blocks(md.read_text(), entries, md.parent, unknown)
        for msg in unknown:
            print(f"warning: {md}: {msg}; the block is left as it is", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("markdown", nargs="*", type=Path,
                    help="markdown files whose bench blocks to regenerate (default: README.md and docs/*.md)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the folder of result files (default bench/results)")
    ap.add_argument("--readme", type=Path, default=None, help="the summary to write (default: README.md beside "
                                                              "the results folder)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file is out of date")
    args = ap.parse_args(argv)
    readme = args.readme or args.results.resolve().parent / "README.md"
    markdown = args.markdown or [p for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))] if p.is_file()]
    stale = []
    for path, text in generate(args.results, readme, markdown).items():
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            atomic_write_text(path, text)
    for path in stale:
        print(f"{'out of date' if args.check else 'wrote'}: {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
