"""The prior-report rules, read from the medspaCy JSON files of ``cxrtriage/explain/rules/``.

* ``target_rules.json`` (``TargetRule.from_json``): what counts as a mention of an urgent finding, plus the
  look-alikes of category :data:`EXCLUDED_LABEL` that must not count;
* ``context_rules.json`` (``ConTextRule.from_json``): the radiology ConText cues added to medspaCy's defaults;
* ``normal_statements.json`` (TargetRule format, regex patterns): sentence-level normal statements, searched in the
  text of each sentence by :func:`normal_statement_pattern` (not through the TargetMatcher, so they neither shadow a
  finding nor get modified by ConText). Read with :mod:`json`, so that it costs no spaCy import.

The ``metadata.note`` of a rule says why it is there. The rules are explained in the docstring of
:mod:`cxrtriage.explain.report`.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only; medspaCy is imported when the pipeline is built
    from medspacy.context import ConTextRule
    from medspacy.target_matcher import TargetRule

__all__ = ["CURRENT", "EXCLUDED_LABEL", "context_rules", "normal_statement_pattern", "target_rules"]

#: Category of look-alike phrases that must NOT count as an urgent finding. They are matched so that the longest-match
#: pruning of the TargetMatcher drops the shorter urgent match inside them.
EXCLUDED_LABEL = "NOT_URGENT"

#: ConText category of "now"/"new": ends the scope of a history cue. medspaCy's JSON format has no ``terminated_by``,
#: so :func:`context_rules` adds it to every HISTORICAL rule.
CURRENT = "CURRENT"

#: Default medspaCy ConText literals dropped because they are wrong for radiology reports (e.g. "evaluate for
#: pneumonia" is a request, not a negation; ": no" is a backward negation made for "fever: no" that turns
#: "FINDINGS: No consolidation" into an affirmed consolidation). ``context_rules.json`` has the replacements.
OVERRIDDEN_DEFAULT_LITERALS = frozenset(
    {"evaluate for", "checked for", "test for", "to exclude", "decline", "return", "free", "prophylaxis", ": no"}
)

_RULES = importlib.resources.files("cxrtriage.explain").joinpath("rules")


def target_rules() -> list[TargetRule]:
    """The TargetMatcher rules, in file order."""
    from medspacy.target_matcher import TargetRule

    with importlib.resources.as_file(_RULES.joinpath("target_rules.json")) as path:
        return TargetRule.from_json(str(path))


def context_rules(default_rules_path: str) -> list[ConTextRule]:
    """medspaCy's default ConText rules (from ``default_rules_path``) minus :data:`OVERRIDDEN_DEFAULT_LITERALS`,
    then the radiology cues; every HISTORICAL rule is terminated by :data:`CURRENT`."""
    from medspacy.context import ConTextRule

    defaults = [
        rule
        for rule in ConTextRule.from_json(default_rules_path)
        if rule.literal.lower() not in OVERRIDDEN_DEFAULT_LITERALS
    ]
    with importlib.resources.as_file(_RULES.joinpath("context_rules.json")) as path:
        rules = defaults + ConTextRule.from_json(str(path))
    for rule in rules:
        if rule.category == "HISTORICAL":
            rule.terminated_by.add(CURRENT)
    return rules


@functools.lru_cache(maxsize=1)
def normal_statement_pattern() -> re.Pattern[str]:
    """One case-insensitive regex: the alternatives of ``normal_statements.json``, in file order."""
    data: dict[str, Any] = json.loads(_RULES.joinpath("normal_statements.json").read_text(encoding="utf-8"))
    return re.compile("|".join(rule["pattern"] for rule in data["target_rules"]), re.IGNORECASE)
