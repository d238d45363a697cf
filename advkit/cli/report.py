"""``advkit report``: work with evaluation reports (``diff`` now)."""

from __future__ import annotations

import json
import sys

import click


@click.group()
def report() -> None:
    """Work with evaluation reports (report.json)."""


@report.command()
@click.argument("old", metavar="OLD.json")
@click.argument("new", metavar="NEW.json")
@click.option("--tol", type=click.FloatRange(min=0), default=0.01, show_default=True,
              help="Accuracy change treated as noise, as a fraction (0.01 = one point).")
@click.option("--significant", "significant_only", is_flag=True,
              help="Count a drop beyond --tol as a regression only when McNemar's test calls it significant "
                   "(p < 0.05; reports with per-sample outcomes).")
@click.option("--json", "as_json", is_flag=True, help="Print the changes as JSON instead of text.")
def diff(old: str, new: str, tol: float, significant_only: bool, as_json: bool) -> None:
    """Compare two reports; exit 1 when NEW regressed against OLD, 2 when they cannot be compared.

    A regression is an accuracy drop beyond --tol (clean, worst case or one attack), a gate that passed and
    now fails, or a model, threat model, eps or attack no longer evaluated. Reports with per-sample outcomes
    are paired sample by sample: each change carries McNemar's exact p-value, and reports of different data,
    eps grids or attack suites are refused.
    """
    import dataclasses

    from advkit.report import diff_reports, format_diff, load_report

    result = diff_reports(load_report(old), load_report(new), tol=tol, significant_only=significant_only)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result), indent=2, allow_nan=False))
    else:
        click.echo(format_diff(result), nl=False)
    if result.regressed:
        sys.exit(1)  # not ctx.exit: click's non-standalone main() would swallow that code
