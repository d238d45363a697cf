"""The ``advkit`` command: the root group assembles one module per command group."""

from __future__ import annotations

import errno
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
    from advkit.runtime.signals import exit_on_signals

    # OpenCV logs each undecodable image to stderr itself; advkit reports those files in its own words
    os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
    try:
        with exit_on_signals():  # SIGTERM, like Ctrl-C, unwinds through the atomic writers: exit 143 / 130
            cli.main(args=argv, prog_name="advkit", standalone_mode=False)
    except click.exceptions.Abort as e:  # click wraps Ctrl-C and runtime.signals.Stopped (SIGTERM: 143)
        code = getattr(e.__cause__, "exit_code", 130)
        click.echo(f"advkit: {'terminated' if code == 143 else 'interrupted' if e.__cause__ else 'aborted'}",
                   err=True)
        sys.exit(code)
    except click.ClickException as e:  # usage errors too: one line, not Click's Usage / Try / Error block
        message = " ".join(e.format_message().split())
        click.echo(f"advkit: error: {message}", err=True)
        sys.exit(2 if e.exit_code in (1, 2) else e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except (AdvkitError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
        click.echo(f"advkit: error: {_one_line(str(e))}", err=True)
        sys.exit(2)
    except OSError as e:  # e.g. a full disk while writing outputs
        # every output is written to a temp file and renamed (runtime.io): a failed write changed no file
        kept = "; the file was not changed (outputs are written whole or not at all)" if e.errno == errno.ENOSPC else ""
        click.echo(f"advkit: error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}{kept}", err=True)
        sys.exit(2)
    except MemoryError:  # e.g. a model or image whose stated size does not fit in memory
        click.echo("advkit: error: out of memory", err=True)
        sys.exit(2)
    except KeyboardInterrupt as e:  # Ctrl-C, or runtime.signals.Stopped (SIGINT 130, SIGTERM 143)
        code = getattr(e, "exit_code", 130)
        click.echo(f"advkit: {'terminated' if code == 143 else 'interrupted'}", err=True)
        sys.exit(code)
    except Exception as e:  # a bug in advkit: still one line, with a way to get the traceback
        if os.environ.get("ADVKIT_DEBUG"):
            raise
        click.echo(f"advkit: internal error: {type(e).__name__}: {_one_line(str(e))} (set ADVKIT_DEBUG=1 for the "
                   "traceback)",
                   err=True)
        sys.exit(1)


def _one_line(message: str) -> str:
    """``message`` on one line: a library's multi-line text must not look like several errors."""
    return " ".join(message.split()) if "\n" in message else message
