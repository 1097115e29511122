"""Cookiecutter hook: render the live template code into the new project (no second copy to drift).

Cookiecutter has written only .scaffold.json (its answers) into the current directory; a bad answer
exits non-zero here and cookiecutter removes the directory, so nothing is left behind.
"""

import json
import sys
from pathlib import Path

answers_file = Path(".scaffold.json")
context = json.loads(answers_file.read_text())
repo = Path(context["_repo_dir"]).resolve()
sys.path.insert(0, str(repo))

from template.scaffold import Answers, ScaffoldError, render  # noqa: E402

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
except ScaffoldError as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(1)
print(
    f"Project '{answers.project_name}' written to {Path.cwd()}: cd there, then `make train` and `make test`."
)
