"""The ``rvec`` command group: registers one module per subcommand; turns rvec errors into one line."""

from __future__ import annotations

import logging
import os
import signal
import sys

import typer
from typer.core import TyperGroup

from rvec import __version__
from rvec.cli.output import plain
from rvec.errors import RvecError

EXIT_USER_ERROR = 1
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so it unwinds like Ctrl-C: every ``finally`` runs and the
    temporary siblings of unfinished outputs are removed."""


def _on_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
    raise Terminated


class _PlainFormatter(logging.Formatter):
    """rvec's log lines (``rvec: WARNING: …``) with the message's control characters escaped: a
    warning quotes tensor, model and path names from files, which must reach the terminal as text."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = plain(record.message)
        return super().formatMessage(record)


class RvecGroup(TyperGroup):
    """Turns any :class:`RvecError` into one line on stderr and exit code 1 — once, here."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RvecError as err:
            typer.echo(f"rvec: error: {plain(err)}", err=True)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except OSError as err:
            # An OS failure no boundary turned into a typed error (an unreadable input): still one
            # line, never a traceback.
            where = f"{os.fsdecode(err.filename)}: " if err.filename is not None else ""
            typer.echo(f"rvec: error: {plain(where)}{plain(err.strerror or err)}", err=True)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except Terminated:
            typer.echo("rvec: terminated by SIGTERM; no half-written output was left", err=True)
            raise typer.Exit(EXIT_TERMINATED) from None


app = typer.Typer(
    cls=RvecGroup,
    help=(
        "rvec — reasoning vectors. Extract v = θ_RL − θ_SFT from two checkpoints of one family, add α·v to "
        "other models of that family, and measure whether chain-of-thought transferred.\n\n"
        "First try: rvec inspect MODEL; then rvec check --sft A --rl B --to T."
    ),
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rvec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_PlainFormatter("rvec: %(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])
    for noisy in ("transformers", "huggingface_hub", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # rvec shows its own progress; the libraries' tqdm bars would interleave with it. Importing
    # huggingface_hub (0.1 s) or transformers (0.9 s) here would tax every command, most of which
    # never load them: huggingface_hub reads this variable when first imported, and transformers
    # copies its switch from huggingface_hub.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def _register() -> None:
    from rvec.cli import (
        anatomy_cmd,
        apply_cmd,
        check_cmd,
        compress_cmd,
        control_cmd,
        convert_cmd,
        eval_cmd,
        export_lora_cmd,
        extract_cmd,
        inspect_cmd,
        merge_cmd,
        pair_cmd,
        run_cmd,
    )

    for module in (
        inspect_cmd,
        check_cmd,
        extract_cmd,
        apply_cmd,
        anatomy_cmd,
        compress_cmd,
        merge_cmd,
        export_lora_cmd,
        control_cmd,
        convert_cmd,
        eval_cmd,
        run_cmd,
        pair_cmd,
    ):
        module.register(app)


_register()


def main() -> None:
    """Console-script entry point: SIGTERM cleans up as Ctrl-C does, then the command runs."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    app()
