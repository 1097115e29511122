"""Selection rules replayed on a finished run's recorded candidates: one fine-tune, many recipes.

Recipes that differ only in how the reported model is chosen after training (which WiSE-FT `a` values
compete, which one is kept without evidence, the sign test's threshold) share the training run. The run
records every candidate `a` (`finetune.wise_audit`: per-sample values on the selection split, the score on
the reported split), and `replay` applies `training/wise.py`'s own `decide` to those records, so a rule
costs no training and gives what a run with those options would report (checked: replaying the run's
own options must give back the `a` it chose, else the study stops).

A study file names them under `rules`:

    rules:
      safe-probe: {base: default, alphas: [0, 0.5, 1], keep: probe, evidence_p: 0.3}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainforge.errors import TemplateError
from trainforge.training.wise import decide

FIELDS = {"base", "alphas", "keep", "evidence_p"}


def check_rules(rules: Mapping[str, Any], recipes: Mapping[str, Any], source: str) -> dict[str, dict]:
    """The study file's `rules`, each a mapping of `FIELDS` with a `base` among its recipes."""
    checked = {}
    for name, rule in (rules or {}).items():
        if name in recipes:
            raise TemplateError(f"{source}: rule `{name}` has the name of a recipe; give it another")
        if not isinstance(rule, Mapping) or set(rule) - FIELDS or "base" not in rule:
            raise TemplateError(
                f"{source}: rule `{name}` must map base (a recipe) and optionally alphas, keep, evidence_p; "
                f"got {rule!r}"
            )
        if rule["base"] not in recipes:
            raise TemplateError(
                f"{source}: rule `{name}`: base `{rule['base']}` is not a recipe (it has: {', '.join(recipes)})"
            )
        if rule.get("keep", "finetune") not in ("finetune", "probe"):
            raise TemplateError(
                f"{source}: rule `{name}`: keep must be finetune or probe, got {rule['keep']!r}"
            )
        checked[name] = {"alphas": [0.0, 1.0], "keep": "finetune", "evidence_p": 1.0, **rule}
    return checked


def replay(summary: Mapping[str, Any], rule: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The `a` the rule chooses from the run's `wise_audit` and the figures it would report: `acc` on the
    reported split, `selection_acc` on the selection split, `optimism` (their difference), `alpha`."""
    audit = summary.get("wise_audit") or {}
    keys = [str(float(a)) for a in rule["alphas"]]
    missing = [k for k in keys if k not in audit]
    if missing:
        raise TemplateError(
            f"{where}: summary.json has no wise_audit for a = {', '.join(missing)}; run the base recipe with "
            f"--finetune.wise_audit listing every a the rules use"
        )
    scores = {float(k): (audit[k]["val_score"], audit[k]["val_loss"]) for k in keys}

    def paired(a: float, b: float) -> tuple[int, int]:
        pairs = list(zip(audit[str(a)]["val_values"], audit[str(b)]["val_values"], strict=True))
        return sum(x > y for x, y in pairs), sum(x < y for x, y in pairs)

    chosen, record = decide(scores, paired, float(rule["evidence_p"]), rule["keep"])
    picked = audit[str(chosen)]
    return {
        "alpha": chosen,
        "acc": picked["reported"],
        "selection_acc": picked["val_score"],
        "optimism": round(picked["val_score"] - picked["reported"], 6),
        "test": record.get("test"),
    }


def check_own_choice(summary: Mapping[str, Any], finetune: Mapping[str, Any], where: str) -> None:
    """Replaying the rule the run itself applied (its config's `finetune` options) must give back the `a`
    it chose: the proof that a replayed rule reports what a run with those options would."""
    rule = {
        "alphas": finetune.get("wise_alphas") or [],
        "keep": finetune.get("wise_keep", "finetune"),
        "evidence_p": finetune.get("wise_evidence_p", 1.0),
    }
    chosen = (summary.get("wise") or {}).get("alpha")
    if chosen is None or not rule["alphas"]:
        return
    replayed = replay(summary, rule, where)["alpha"]
    if replayed != float(chosen):
        raise TemplateError(
            f"{where}: replaying the run's own selection rule gives a = {replayed}, the run chose a = {chosen}: "
            "the recorded candidates do not match the run, so no rule can be replayed on it"
        )
