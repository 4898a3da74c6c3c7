"""Settings declared once: each field of a settings dataclass carries its type, default, range, choices and
help, and everything else is derived from that one declaration.

    @dataclass
    class TrainConfig(Options):
        dropout: float = option(0.2, "dropout probability while training", low=0, high=1, high_open=True)

- command-line flags (`add_flags`): `--dropout`, parsed and range-checked by argparse itself, so a bad value
  stops the command at once, in one line that names the flag;
- text from a form field (`Spec.parse`): the workbench's forms type and check their fields with the same
  specs;
- every check of a value wherever it comes from (`problems`): flags, form fields, a checkpoint's metadata;
- the workbench's field list (`specs`): label, kind, choices, help.

A value is checked once, where it enters (a flag, a field, a file); code that uses the settings relies on it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from core.errors import PoemError

_SPEC = "poemtui.option"


class OptionError(PoemError):
    """A setting with a value it cannot take (one line naming the setting)."""


@dataclass(frozen=True)
class Spec:
    """One setting: what it is, what it may be, and how people see it."""

    name: str
    kind: type  # int, float, str or bool
    default: Any
    help: str
    optional: bool = False  # None is allowed (it means "auto" or "derived"; `none` says what)
    none: str = ""  # what None means, for --help and forms ("per optimizer")
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself excluded
    high_open: bool = False
    label: str = ""  # the workbench's label
    aliases: tuple[str, ...] = ()  # more flags, e.g. ("-t",)
    test: typing.Callable[[Any], str | None] | None = None  # a further check: the problem, or None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def range_text(self) -> str:
        """The allowed range as people write it: "in [0, 1)", "≥ 1", "≤ 100"."""
        low, high = _number_text(self.low), _number_text(self.high)
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{low}, {high}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '≥'} {low}"
        if self.high is not None:
            return f"{'<' if self.high_open else '≤'} {high}"
        return ""

    def _range_problem(self, value: float) -> str | None:
        """What is wrong with a number outside the range: the bound it crosses (the whole range when both
        ends are small enough to read, as for a probability)."""
        below = self.low is not None and (value < self.low or (self.low_open and value == self.low))
        above = self.high is not None and (value > self.high or (self.high_open and value == self.high))
        if not (below or above):
            return None
        if self.low is not None and self.high is not None and abs(self.high) <= 1000:
            wanted = self.range_text()
        elif below:
            wanted = f"{'>' if self.low_open else '≥'} {_number_text(self.low)}"
        else:
            wanted = f"{'<' if self.high_open else '≤'} {_number_text(self.high)}"
        return f"must be {wanted} (got {_number_text(value)})"

    def problem(self, value: Any) -> str | None:
        """Why `value` cannot be this setting's value, in a few words (None: it can)."""
        if value is None:
            return None if self.optional else "required"
        if self.kind is bool:
            return None if isinstance(value, bool) else f"must be true or false, got {_shown(value)}"
        if self.kind is int and (not isinstance(value, int) or isinstance(value, bool)):
            return f"must be a whole number, got {_shown(value)}"
        if self.kind is float:
            if not isinstance(value, int | float) or isinstance(value, bool):
                return f"must be a number, got {_shown(value)}"
            if not math.isfinite(value):
                return f"must be a finite number, got {value}"
        if self.kind is str and not isinstance(value, str):
            return f"must be text, got {_shown(value)}"
        if self.kind is str and (problem := text_problem(value)):
            return problem
        if self.choices and value not in self.choices:
            return f"choose one of {', '.join(map(str, self.choices))} (got {_shown(value)})"
        if self.kind in (int, float) and (problem := self._range_problem(value)):
            return problem
        return self.test(value) if self.test is not None else None

    def parse(self, text: str) -> Any:
        """Text (a flag's argument, a form field) -> a checked value; OptionError says why not."""
        text = text.strip()
        if text == "" and self.optional:
            return None
        if self.kind is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise OptionError(f"expected true or false, got {text!r}")
        if self.kind in (int, float):
            try:
                value = self.kind(text)
            except ValueError:
                what = "a whole number" if self.kind is int else "a number"
                raise OptionError(f"expected {what}, got {text!r}") from None
        else:
            value = text
        problem = self.problem(value)
        if problem:
            raise OptionError(problem)
        return value

    def show(self, value: Any) -> str:
        """A value as a form field or a flag shows it."""
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)


def text_problem(text: str) -> str | None:
    """What makes a string unusable as a setting: bytes that were not UTF-8 (argv keeps them as lone
    surrogates, which no file, JSON line or terminal can hold) or a NUL character (no path may hold one)."""
    bad = next((ch for ch in text if "\ud800" <= ch <= "\udfff"), None)
    if bad is not None:
        byte = f" (byte 0x{ord(bad) - 0xDC00:02x})" if "\udc80" <= bad <= "\udcff" else ""
        return f"is not valid UTF-8{byte}"
    if "\x00" in text:
        return "holds a NUL character"
    return None


def device_problem(name: str, *, auto: bool = False) -> str | None:
    """cpu, cuda or cuda:N (and auto where the command resolves it): what a --device may be."""
    if name in ("cpu", "cuda") or (auto and name == "auto"):
        return None
    if name.startswith("cuda:") and name[5:].isdigit():
        return None
    return f"choose {'auto, ' if auto else ''}cpu or cuda (got {name!r})"


def option(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field declared as a setting (see the module docstring); its type is the annotation's."""
    return field(default=default, metadata={_SPEC: (help, spec)})


def same_as(settings: type[Options], name: str, default: Any = dataclasses.MISSING) -> Any:
    """A field declared like `settings`'s field `name` (its help, range, choices), with another default
    if given: one declaration for a setting that two dataclasses hold (TrainConfig and ModelConfig)."""
    source = settings.__dataclass_fields__[name]
    value = source.default if default is dataclasses.MISSING else default
    return field(default=value, metadata=source.metadata)


def brief(problem: str) -> str:
    """A problem without the value it quotes, for a form that shows the value right above it."""
    return re.sub(r",? (\(got .*\)|got .*)$", "", problem)


def _number_text(value: float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):  # may be too large for a float (10**400)
        digits = str(abs(value))
        if len(digits) <= 15:
            return str(value)
        return f"{'-' if value < 0 else ''}{digits[0]}.{digits[1:3]}e+{len(digits) - 1}"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


class Options:
    """Base of a settings dataclass whose fields are declared with `option`."""

    @classmethod
    @functools.cache
    def specs(cls) -> dict[str, Spec]:
        hints = typing.get_type_hints(cls)
        out = {}
        for f in dataclasses.fields(cls):
            if _SPEC not in f.metadata:
                continue
            help, spec = f.metadata[_SPEC]
            kinds = [k for k in typing.get_args(hints[f.name]) or (hints[f.name],) if k is not type(None)]
            optional = type(None) in typing.get_args(hints[f.name])
            out[f.name] = Spec(f.name, kinds[0], f.default, help, optional=optional, **spec)
        return out

    @classmethod
    def problems(cls, values: dict) -> dict[str, str]:
        """setting -> problem for every value in `values` that is not valid (empty when all are), then the
        problems of combinations (`combination_problems`) once each value is valid on its own."""
        specs = cls.specs()
        found = {k: p for k, v in values.items() if k in specs and (p := specs[k].problem(v))}
        if not found:
            merged = {**cls().to_dict(), **values}
            found = {k: p for k, p in cls.combination_problems(merged).items() if k in values}
        return found

    @classmethod
    def combination_problems(cls, values: dict) -> dict[str, str]:
        """Problems of settings that are valid alone but not together (subclasses say which)."""
        return {}

    def check(self, source: str = "") -> None:
        """Raise OptionError for the first invalid setting: `--name: problem` (or `source: name problem`)."""
        problems = type(self).problems(self.to_dict())
        if problems:
            name, problem = next(iter(problems.items()))
            where = f"{source}: setting {name}" if source else type(self).specs()[name].flag
            raise OptionError(f"{where}: {problem}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        """An instance from a dict, unknown keys ignored (values are not checked here: call check())."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def add_flags(
    parser: argparse.ArgumentParser,
    settings: type[Options],
    *,
    only: typing.Iterable[str] | None = None,
    defaults: bool = True,
) -> None:
    """A flag per setting; argparse parses and checks each value as it reads it (a bad one: one line, exit 2).

    defaults=False leaves unset flags out of the namespace (argparse.SUPPRESS), so that a caller can tell
    which settings were given."""
    for name, spec in settings.specs().items():
        if only is not None and name not in only:
            continue
        add_spec(parser, spec, defaults=defaults)


def add_option(
    parser: argparse.ArgumentParser, name: str, kind: type, default: Any, help: str, **spec: Any
) -> Spec:
    """One flag of a command that has no settings dataclass, declared like an `option` field (its kind,
    default, range, choices), parsed and range-checked by argparse: `add_option(p, "batch_size", int, 64,
    "poems per batch", low=1)` is `--batch-size`. Returns the Spec (the fuzz table lists every flag)."""
    optional = spec.pop("optional", default is None)
    required = spec.pop("required", False)
    declared = Spec(name, kind, default, help, optional=optional, **spec)
    add_spec(parser, declared, required=required)
    return declared


def add_spec(
    parser: argparse.ArgumentParser, spec: Spec, *, defaults: bool = True, required: bool = False
) -> None:
    """The flag of one Spec (add_flags and add_option make them; a command may reuse a settings class's Spec
    with its own default through dataclasses.replace)."""
    shown = spec.none if spec.default is None and spec.none else spec.show(spec.default) or "none"
    switch = {"nargs": "?", "const": True} if spec.kind is bool else {}  # `--gelv` = `--gelv true`
    range_text = f"; {spec.range_text()}" if spec.range_text() and not spec.choices else ""
    parser.add_argument(
        spec.flag,
        *spec.aliases,
        dest=spec.name,
        type=_argparse_type(spec),
        metavar=spec.name.upper() if not spec.choices else "{" + ",".join(map(str, spec.choices)) + "}",
        default=spec.default if defaults else argparse.SUPPRESS,
        help=f"{spec.help} ({'required' if required else f'default: {shown}'}{range_text})",
        **({"required": True} if required else {}),
        **switch,
    )


def _argparse_type(spec: Spec):
    def parse(text: str):
        try:
            return spec.parse(text)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = spec.kind.__name__
    parse.spec = spec  # what the flag is declared as (tests/fuzz_cli.py fuzzes every flag from it)
    return parse


def given(args: argparse.Namespace, settings: type[Options]) -> dict[str, Any]:
    """The settings a namespace holds (with add_flags(defaults=False): those given on the command line)."""
    return {k: v for k, v in vars(args).items() if k in settings.specs()}
