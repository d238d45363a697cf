"""``advkit detect``: score images, folders and videos with a fake-image detector."""

from __future__ import annotations

import click

from advkit.cli._common import model_options, options_from

TABLE_ROWS = 20


@click.command("detect")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--ckpt", required=True, type=click.Path(),
              help="A 2-class detector checkpoint (class 0 real, 1 fake) or a training run folder holding one; "
                   "or any model form with two logits: timm:NAME/torchvision:NAME with --weights, "
                   "py:module:factory, a TorchScript file (docs/models.md).")
@model_options
@click.option("--out", type=click.Path(dir_okay=False),
              help="Write every row to FILE.csv (rows, then one video_summary row per video) or FILE.json "
                   "({rows, videos, summary}).")
@click.option("--threshold", type=float, default=0.5, show_default=True, help="score_fake >= this is labelled fake.")
@click.option("--every", type=int, help="Score every N-th video frame (default 10).")
@click.option("--fps", type=float, help="Score R frames per second of video time instead of --every.")
@click.option("--faces", is_flag=True,
              help="Score the largest face (OpenCV Haar cascade, box grown 1.3x); no face -> a 'no face' row.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--workers", type=int, help="Decoding processes (default min(4, CPUs); 0 decodes in-process).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def detect(paths, ckpt, out, threshold, every, fps, faces, batch_size, workers, device, **model_kw):
    """Score PATHs (images; folders, recursively; videos .mp4 .avi .mov .mkv .webm) with a fake-image detector.

    Each image or sampled frame is converted to the detector's channels and resized to its input size
    (the resized_from column says from what). Unreadable files get an error row and do not stop the run.

    Exit codes: 0 the run finished (even with per-file errors); 2 usage or fatal error (no PATH exists,
    nothing to score, not a 2-class detector, bad --out suffix).
    """
    from advkit.cli._common import hold_out
    from advkit.detect.infer import check_out_path, detect_paths, load_detector, write_result
    from advkit.runtime.device import resolve_device

    out_path = check_out_path(out) if out else None
    if out_path is not None:
        hold_out(out_path, file=True)
    dev = resolve_device(device)
    model = load_detector(ckpt, device=dev, options=options_from(model_kw))
    result = detect_paths(model, paths, threshold=threshold, every=every, fps=fps, faces=faces,
                          batch_size=batch_size, workers=workers, device=dev, progress=True)
    _print_table(result.rows, result.videos, out_path)
    _print_summary(result.summary)
    if out_path is not None:
        click.echo(f"wrote {write_result(result, out_path)}")


def _short(path: str, width: int = 48) -> str:
    return path if len(path) <= width else "..." + path[-(width - 3):]


def _print_table(rows: list[dict], videos: list[dict], out_path) -> None:
    width = min(48, max(len(r["path"]) for r in rows))
    click.echo(f"{'path':<{width}}  {'frame':>6}  {'score_fake':>10}  label")
    for r in rows[:TABLE_ROWS]:
        frame = "-" if r["frame"] is None else str(r["frame"])
        score = "-" if r["score_fake"] is None else f"{r['score_fake']:.4f}"
        label = r["label"] if r["error"] is None else f"error: {r['error']}"
        click.echo(f"{_short(r['path'], width):<{width}}  {frame:>6}  {score:>10}  {label}")
    if len(rows) > TABLE_ROWS:
        where = f"all rows are in {out_path}" if out_path else "write them all with --out FILE.csv"
        click.echo(f"... {len(rows) - TABLE_ROWS} more rows ({where})")
    for v in videos[:TABLE_ROWS]:
        if v["score_mean"] is None:
            click.echo(f"video {v['path']}: nothing scored ({v['error'] or 'no frame with a face'})")
            continue
        click.echo(f"video {v['path']}: {v['frames_scored']}/{v['frames_sampled']} sampled frames scored, "
                   f"mean {v['score_mean']:.4f}, max {v['score_max']:.4f}, {v['share_fake']:.0%} over the "
                   f"threshold, {v['frames_no_face']} without a face -> {v['label']}")
    if len(videos) > TABLE_ROWS:
        click.echo(f"... {len(videos) - TABLE_ROWS} more videos")


def _print_summary(s: dict) -> None:
    parts = [f"{s['scored']} images/frames scored ({s['fake']} fake, {s['real']} real at threshold "
             f"{s['threshold']:g})", f"errors {s['errors']}", f"without a face {s['no_face']}",
             f"resized {s['resized']} (to {s['input']})"]
    if s["skipped_files"]:
        parts.append(f"non-image files skipped {s['skipped_files']}")
    if s["images_per_s"] is not None:
        parts.append(f"{s['images_per_s']:.1f} images/s")
    click.echo("summary: " + "; ".join(parts))
