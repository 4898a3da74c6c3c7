"""A few examples of tests/fuzz_cli.py on every run of the suite (seconds): every declared option of every
command, parsed by the command's own parser, is either refused in one line or becomes a value its
declaration accepts; every form field likewise. The full run (every command executed, the special files,
hundreds of inputs per command) is the script; docs/RELIABILITY.md has its table."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest
from fuzz_cli import spec_actions, strategy_for, subparser
from hypothesis import HealthCheck, given, settings

from core.generation.settings import SampleSettings
from core.options import OptionError
from core.training.settings import TrainConfig

FEW = settings(
    max_examples=8, database=None, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)


def parsers() -> dict[str, argparse.ArgumentParser]:
    import core.bench.__main__ as bench
    import core.corpus.__main__ as corpus
    import core.evaluate as evaluate
    import core.experiments.__main__ as experiments
    import core.generate as generate
    import core.inspect.__main__ as inspect
    import core.judge as judge
    import core.runs.__main__ as runs
    import core.train as train

    exp = experiments.build_parser()
    return {
        "core.train": train.build_parser(),
        "core.generate": generate.build_parser(),
        "core.judge": judge.build_parser(),
        "core.evaluate": evaluate.build_parser(),
        "core.corpus stats": subparser(corpus.build_parser(), "stats"),
        "core.bench": bench.build_parser(),
        "core.inspect": inspect.build_parser(),
        "core.runs compare": subparser(runs.build_parser(), "compare"),
        **{f"core.experiments {n}": subparser(exp, n) for n in ("optimizers", "lr-sweep", "init")},
    }


CASES = [(name, flag) for name, parser in parsers().items() for flag in spec_actions(parser)]


def test_every_numeric_flag_of_every_command_is_declared():
    """No command keeps a bare `type=int` / `type=float` flag: each is range-checked where it is parsed."""
    for name, parser in parsers().items():
        for action in parser._actions:
            assert action.type not in (int, float), (
                f"{name} {action.option_strings}: declare it (core.options)"
            )


@pytest.mark.parametrize(("command", "flag"), CASES, ids=[f"{c} {f}" for c, f in CASES])
def test_a_flag_is_refused_in_one_line_or_parsed_to_a_valid_value(command, flag):
    parser = parsers()[command]
    spec = spec_actions(parser)[flag]

    @FEW
    @given(value=strategy_for(spec))
    def attempt(value):
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                args, _ = parser.parse_known_args([flag, value])
        except SystemExit as exc:
            assert exc.code == 2 and len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
            return
        parsed = getattr(args, spec.name)
        assert spec.problem(parsed) is None, (value, parsed)

    attempt()


def field_check(spec):
    @FEW
    @given(value=strategy_for(spec))
    def attempt(value):
        try:
            parsed = spec.parse(value)
        except OptionError as exc:
            assert "\n" not in str(exc)
            return
        assert spec.problem(parsed) is None, (spec.name, value, parsed)

    return attempt


@pytest.mark.parametrize("settings_class", [TrainConfig, SampleSettings])
def test_form_fields_refuse_or_accept_valid_values(settings_class):
    for spec in settings_class.specs().values():
        field_check(spec)()
