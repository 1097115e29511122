"""`python -m <project> ...` and `python -m trainforge ...`: a tool by name (export, infer, new, update...),
else the LightningCLI subcommands (fit, validate, test, predict), imported only then: a tool such as
`new` or `update` starts without loading Lightning."""

from __future__ import annotations

import sys

from trainforge.errors import is_user_error, pop_debug_flag, report
from trainforge.tools import run_tool, tools_help

USAGE = """usage: python -m <project> <command> [options]

training and evaluation (LightningCLI; `<command> --help` lists every key):
  fit              train, then evaluate the reported checkpoint and write summary.json
  validate, test   evaluate a checkpoint (--ckpt_path) into its run directory
  predict          predictions.csv of a checkpoint (--ckpt_path) on the DataModule's predict split

tools (`<tool> --help`):
{tools}"""


def main(argv: list[str] | None = None) -> None:
    """User errors end in one line on stderr and exit 2; `--debug` or TRAINFORGE_DEBUG=1 shows the traceback."""
    args, debug = pop_debug_flag(sys.argv[1:] if argv is None else list(argv))
    if args in ([], ["-h"], ["--help"]):
        print(USAGE.format(tools=tools_help()))
        return
    try:
        if run_tool(args):
            return
        from trainforge.cli import TemplateCLI
        from trainforge.launch import run_cli

        TemplateCLI.argv = list(args)
        run_cli(args)
    except Exception as error:
        if not is_user_error(error):
            raise
        sys.exit(report(error, debug))
