"""The ``advkit`` command: the root group assembles one module per command group."""

from __future__ import annotations

import logging
import os
import sys

import click

from advkit import __version__
from advkit.errors import AdvkitError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="advkit")
@click.option("-v", "--verbose", is_flag=True, help="Log what the library does.")
def cli(verbose: bool) -> None:
    """advkit: attacks, adversarial training, GANs and fake-image detectors on PyTorch."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from advkit.cli.attack import attack
    from advkit.cli.detect import detect
    from advkit.cli.eval import eval_cmd
    from advkit.cli.gan import generate
    from advkit.cli.report import report
    from advkit.cli.train import train

    cli.add_command(attack)
    cli.add_command(detect)
    cli.add_command(eval_cmd)
    cli.add_command(generate)
    cli.add_command(report)
    cli.add_command(train)


_register()


def main(argv: list[str] | None = None) -> None:
    """The ``advkit`` command: user errors become one line on stderr and exit code 2, never a traceback.

    Args:
        argv: the arguments after ``advkit``; default ``sys.argv[1:]``.

    Raises:
        SystemExit: always, with the command's exit code.
    """
    try:
        cli.main(args=argv, prog_name="advkit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("advkit: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except (AdvkitError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
        click.echo(f"advkit: error: {e}", err=True)
        sys.exit(2)
    except OSError as e:  # e.g. a full disk while writing outputs
        click.echo(f"advkit: error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("advkit: interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # a bug in advkit: still one line, with a way to get the traceback
        if os.environ.get("ADVKIT_DEBUG"):
            raise
        click.echo(f"advkit: internal error: {type(e).__name__}: {e} (set ADVKIT_DEBUG=1 for the traceback)",
                   err=True)
        sys.exit(1)
