"""Start the engine's CLI from argv: `main` (user errors end in one line, exit 2) and `run_cli` (exceptions
propagate, for sweeps). The argv is expanded (config_files.py) and handed to `TemplateCLI` (cli.py).
`python -m <project> ...` goes through entry.py, which runs a tool by name, else this.
"""

from __future__ import annotations

import os
import sys
import warnings

from lightning.pytorch.callbacks import Callback

from trainforge.cli import TemplateCLI
from trainforge.config_files import SUBCOMMANDS, SaveRunConfig, base_configs, expand_argv
from trainforge.data.datamodule import DataModule
from trainforge.errors import is_user_error, pop_debug_flag, report
from trainforge.models import Model
from trainforge.rundir import RUN_DIR_ENV


def main(
    argv: list[str] | None = None,
    callbacks: list[Callback] | None = None,
    cli_class: type[TemplateCLI] | None = None,
) -> None:
    """Run the CLI in this process; `callbacks` are added to the Trainer's (sweeps' pruning, spot checks).

    User errors end in one line on stderr and exit 2; `--debug` or TRAINFORGE_DEBUG=1 shows the traceback.
    Tools by name go through `trainforge.entry.main`, as `python -m` does (tools sit above the CLI: they
    run it).
    """
    args, debug = pop_debug_flag(sys.argv[1:] if argv is None else list(argv))
    try:
        TemplateCLI.argv = list(args)
        run_cli(args, callbacks, cli_class)
    except Exception as error:
        if not is_user_error(error):
            raise
        sys.exit(report(error, debug))


def run_cli(
    argv: list[str], callbacks: list[Callback] | None = None, cli_class: type[TemplateCLI] | None = None
) -> None:
    """The CLI without the user-error wrapper: exceptions propagate (sweeps mark such trials failed)."""
    args = expand_argv(argv)
    base = base_configs(args)
    previous = os.environ.get(RUN_DIR_ENV)
    # We pass the expanded argv on purpose; LightningCLI warns whenever args and sys.argv both exist.
    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
    try:
        (cli_class or TemplateCLI)(
            Model,
            DataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=SaveRunConfig,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            parser_kwargs={
                "exit_on_error": False,
                "allow_abbrev": False,
                **{
                    sub: {"default_config_files": base, "exit_on_error": False, "allow_abbrev": False}
                    for sub in SUBCOMMANDS
                },
            },
            args=args,
            trainer_defaults={"callbacks": list(callbacks)} if callbacks else None,
        )
    finally:
        # In-process callers (tests, sweeps) start each run fresh; launched DDP ranks inherited it already.
        if previous is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous
