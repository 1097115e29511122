"""Cookiecutter hook: render the template's live surface and its engine wheel into the new project.

Cookiecutter has written only .scaffold.json (its answers) into the current directory. The scaffold code
is the template's own engine (engine/trainforge/tools/scaffold.py), imported from the checkout, not from
whatever trainforge this Python may have installed. A bad answer exits non-zero here and cookiecutter
removes the directory, so nothing is left behind.
"""

import json
import sys
from pathlib import Path

answers_file = Path(".scaffold.json")
context = json.loads(answers_file.read_text())
repo = Path(context["_repo_dir"]).resolve()
sys.path.insert(0, str(repo / "engine"))

from trainforge.errors import TemplateError  # noqa: E402
from trainforge.tools.scaffold import Answers, render  # noqa: E402

answers_file.unlink()
answers = Answers(
    project_name=context["project_name"],
    package_name=context["package_name"],
    author=context["author"],
    license=context["license"],
    wandb=context["wandb"] == "yes",
    example=context["example"],
)
try:
    render(repo, Path.cwd(), answers)
except TemplateError as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(1)
print(
    f"Project '{answers.project_name}' written to {Path.cwd()}: cd there, then `make install`, "
    "`make test` and `make train`."
)
