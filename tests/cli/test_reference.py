"""The settings schema behind the CLI: every TuneConfig field is a flag with the model's
default and choices, the flags map back onto TuneConfig, and the README's synopsis and
docs/commands.md are what the parsers print."""

from __future__ import annotations

from pathlib import Path

import pytest

from asap.agent.config import TuneConfig
from asap.agent.llm.protocols import PROTOCOLS
from asap.cli.flags import SKIP, flag_of, settings_from
from asap.cli.parser import build_parser as _parser
from asap.cli.reference import readme_with, reference

ROOT = Path(__file__).parents[2]


def _tune(*argv: str) -> TuneConfig:
    args = _parser().parse_args(["tune", "digits-mlp", *argv])
    return TuneConfig.make(workload=args.workload, **settings_from(args))


def test_every_setting_is_a_tune_flag_with_the_models_help():
    helps = {a.dest: a for a in _parser()._subparsers._group_actions[0].choices["tune"]._actions}
    for name, field in TuneConfig.model_fields.items():
        if name in SKIP:
            continue
        assert name in helps, f"no flag for {name}"
        assert flag_of(name) in helps[name].option_strings
        assert (field.description or "")[:30] in (helps[name].help or "")
    assert helps["decide"].choices == ["auto", *PROTOCOLS]  # the protocol registry's names
    assert helps["pruner"].choices == ["none", "median", "sha", "hyperband"]


def test_unset_flags_leave_the_models_defaults_and_set_ones_map_onto_fields():
    assert _tune() == TuneConfig(workload="digits-mlp")  # defaults live in the model alone
    cfg = _tune("--depth", "auto", "--plan", "3", "--cost-weight", "cool", "--no-ahead",
                "--no-selftune", "--llm", "off", "--time-budget", "90", "--isolate", "off",
                "--decide", "json", "--width", "1")
    assert (cfg.depth, cfg.plan, cfg.cost_weight, cfg.decide_ahead, cfg.selftune, cfg.llm,
            cfg.time_budget_s, cfg.isolate, cfg.decide, cfg.width) == (
        None, 3, "cool", False, False, False, 90.0, False, "json", 1)


@pytest.mark.parametrize("argv, message", [
    (["--depth", "deep"], "--depth must be an integer or auto, got 'deep'"),
    (["--cost-weight", "nope"], "--cost-weight must be a number or cool, got 'nope'"),
    (["--tau", "x"], "--tau must be a number, got 'x'"),
])
def test_a_value_of_the_wrong_kind_is_named_by_its_flag(argv, message):
    with pytest.raises(ValueError, match=message):
        _tune(*argv)


def test_the_readme_synopsis_and_the_command_reference_match_the_parsers():
    """Run ``python -m asap.cli.reference`` after changing a flag."""
    readme = (ROOT / "README.md").read_text()
    assert readme_with(readme) == readme, "README synopsis is stale"
    assert (ROOT / "docs" / "commands.md").read_text() == reference(), "docs/commands.md is stale"


def test_eval_help_names_every_method_and_task_it_knows():
    from asap.evals.grid import TASKS
    from asap.evals.methods import METHODS
    ev = _parser()._subparsers._group_actions[0].choices["eval"]
    helps = {a.dest: a.help or "" for a in ev._actions}
    assert all(m in helps["methods"] for m in METHODS), "a method missing from --methods' help"
    assert all(t in helps["tasks"] for t in TASKS), "a task missing from --tasks' help"
