"""Fuzz every command's options, the workbench's form fields and the special files: count how each input
was handled. Not a test module (tests/test_reliability_fuzz.py runs a few examples of the same code).

    .venv/bin/python tests/fuzz_cli.py [--examples N] [--seed S] [--json PATH] [--only COMMAND ...]

For each command, each of its declared options (the Spec behind every flag, found through argparse) gets N
values drawn by hypothesis: NaN, infinities, huge, negative and zero numbers, boundaries, wrong types,
unicode, bytes that are not UTF-8 (as Python hands argv over: surrogateescape), NUL, long text. Every path
argument gets the special files (FIFO, /dev/zero, a symlink loop, a folder, missing, unreadable, empty,
random bytes, a name of invalid UTF-8, a name too long, /proc files). Each input runs the command in this
process through core.cli.run, on top of an argv that makes it quick (a 20-poem corpus, a tiny checkpoint,
--max-steps 1), under a 60 s alarm. The outcome is one of:

    ran        exit 0 (and with --json, stdout is one strict JSON object: no NaN, no Infinity;
               after core.train, `last` loads and metrics.jsonl ends with `done`)
    refused    exit 2 with exactly one line on stderr, nothing on stdout
    traceback  a traceback, or exit 1 ("internal error")
    hang       still running after 60 s
    other      anything else (say, exit 2 with two lines, or JSON with NaN): counted as a failure

core.bench, core.gradcheck and core.experiments are fuzzed at their parsers only (a valid value would run a
benchmark, a float64 gradient check or a series of trainings): refused or parsed.
POEMTUI_MEMORY_AVAILABLE=1G keeps a valid-but-huge configuration from really filling this shared machine:
the memory check refuses it, which is the behaviour under test.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import random
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

HANG_S = 60
POEMS = [
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。",
    "红豆生南国，春来发几枝。愿君多采撷，此物最相思。",
]


class Hang(BaseException):  # not an Exception: core.cli.run must not report it as an internal error
    pass


# --- values ----------------------------------------------------------------------------------------------

NASTY_TEXT = [
    "", " ", "nan", "NaN", "inf", "-inf", "Infinity", "1e308", "-1e308", "1e999", "-0", "0", "-1", "1",
    "0x10", "1_000", "1e3", "1.5", "9" * 400, "٣", "一", "山", "\x00", "\udcff\udcfe", "a\udce5b", "\n",
    "--help", "-1e-320", "true", "None", "[]", "{}", "'", '"', "\\", "%s", "../../etc/passwd", "🀄" * 50,
]  # fmt: skip


def numbers(spec) -> st.SearchStrategy[str]:
    bounds = [b for b in (spec.low, spec.high) if b is not None]
    near = [str(x) for b in bounds for x in (b, b - 1, b + 1, b * 10 + 7, -b)]
    if spec.kind is float:
        near += [repr(float(b)) for b in bounds] + [repr(b + 1e-9) for b in bounds]
    return st.one_of(
        st.sampled_from(NASTY_TEXT + near),
        st.integers(-(2**70), 2**70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.text(max_size=12),
    )


def texts(spec) -> st.SearchStrategy[str]:
    choices = [str(c) for c in spec.choices]
    return st.one_of(
        st.sampled_from(NASTY_TEXT + choices + [c.upper() for c in choices]),
        st.text(max_size=40),
        st.binary(max_size=16).map(os.fsdecode),  # argv bytes that are not UTF-8
    )


def strategy_for(spec) -> st.SearchStrategy[str]:
    if spec.kind in (int, float):
        return numbers(spec)
    if spec.kind is bool:
        return st.one_of(
            st.sampled_from(["true", "false", "1", "0", "yes", "maybe", "", "nan"]), st.text(max_size=5)
        )
    return texts(spec)


def special_files(root: Path) -> dict[str, str]:
    """name -> path of files a careless or hostile user may name."""
    root.mkdir(parents=True, exist_ok=True)
    fifo = root / "fifo"
    os.mkfifo(fifo)
    loop = root / "loop"
    loop.symlink_to(loop)
    folder = root / "folder"
    folder.mkdir()
    empty = root / "empty.txt"
    empty.write_bytes(b"")
    randoms = root / "random.bin"
    randoms.write_bytes(random.Random(0).randbytes(4096))
    latin = root / "latin1.txt"
    latin.write_bytes("café poème\n".encode("latin-1"))
    unreadable = root / "unreadable.txt"
    unreadable.write_text("山\n", encoding="utf-8")
    unreadable.chmod(0)
    bad_name = os.fsdecode(bytes(root) + b"/\xff\xfe.txt")
    Path(bad_name).write_text("\n".join(POEMS) + "\n", encoding="utf-8")
    return {
        "FIFO": str(fifo),
        "/dev/zero": "/dev/zero",
        "/dev/null": "/dev/null",
        "/dev/stdin": "/dev/stdin",
        "symlink loop": str(loop),
        "folder": str(folder),
        "missing": str(root / "missing" / "file"),
        "empty": str(empty),
        "random bytes": str(randoms),
        "not UTF-8": str(latin),
        "unreadable": str(unreadable),
        "name not UTF-8": bad_name,
        "name too long": str(root / ("x" * 300)),
        "path through a file": str(empty / "below"),
        "/proc/self/mem": "/proc/self/mem",
        "/proc/self/environ": "/proc/self/environ",
        "/proc/x/y": "/proc/poemtui/run",
        "/": "/",
    }


# --- running one input -----------------------------------------------------------------------------------


def run_command(module: str, argv: list[str]) -> tuple[str, str]:
    """(outcome, detail) of `python -m module argv` in this process."""
    from core.cli import run as cli_run

    package = importlib.import_module(module)
    main = getattr(package, "main", None) or importlib.import_module(f"{module}.__main__").main
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    out, err = io.StringIO(), io.StringIO()

    def ring(_signum, _frame):
        raise Hang

    old_alarm = signal.signal(signal.SIGALRM, ring)
    signal.alarm(HANG_S)
    status = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli_run(main, argv)
            except SystemExit as exc:
                status = exc.code
    except Hang:
        return "hang", f"{module} {argv!r}"
    except BaseException:  # anything escaping core.cli.run
        return "traceback", traceback.format_exc(limit=3)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old_alarm)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    stdout, stderr = out.getvalue(), err.getvalue()
    if "Traceback" in stderr or status == 1:
        return "traceback", stderr[-600:]
    if status == 0:
        if "--json" in argv and not {"-h", "--help"} & set(argv):  # help is text, by design
            try:
                json.loads(stdout, parse_constant=_refuse_constant)
            except ValueError as exc:
                return "other", f"exit 0 but stdout is not strict JSON ({exc}): {stdout[:200]!r}"
        return "ran", ""
    if status == 2 and stdout == "" and len(stderr.strip().splitlines()) == 1:
        return "refused", stderr.strip()
    return "other", f"exit {status}: {stderr[-400:]!r}"


def _refuse_constant(name: str):
    raise ValueError(f"bare {name}")


def parse_only(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[str, str]:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_known_args(argv)
    except SystemExit as exc:
        lines = err.getvalue().strip().splitlines()
        if exc.code == 2 and len(lines) == 1:
            return "refused", lines[0]
        return "other", f"exit {exc.code}: {err.getvalue()[-300:]!r}"
    except BaseException:
        return "traceback", traceback.format_exc(limit=3)
    return "ran", ""


# --- the commands ----------------------------------------------------------------------------------------


class Fixtures:
    """A 20-poem corpus, a tiny trained checkpoint, a data folder for fetch: what makes each run quick."""

    def __init__(self, root: Path):
        from engine_fixtures import train_tiny

        self.root = root
        self.corpus = root / "poems.txt"
        texts = [p[:-1] + "山水花月风云日"[i % 7] + "。" for i, p in enumerate(POEMS * 4)]
        self.corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
        train_tiny(root / "ckpt", corpus=str(self.corpus), max_steps=2, eval_every=0, sample_on_eval=False)
        self.checkpoint = root / "ckpt" / "last.safetensors"
        self.data = root / "data"
        self.data.mkdir()
        self.empty_source = root / "empty-source"
        self.empty_source.mkdir()
        self.n = 0

    def fresh(self) -> str:
        self.n += 1
        return str(self.root / "runs" / f"r{self.n}")


def train_base(fx: Fixtures) -> list[str]:
    return [
        "--corpus", str(fx.corpus), "--embed-size", "8", "--hidden-size", "8", "--num-layers", "1",
        "--batch-size", "8", "--max-steps", "1", "--eval-every", "0", "--sample-on-eval", "false", "--quiet",
    ]  # fmt: skip


def with_flag(base: list[str], flag: str, value: str) -> list[str]:
    """base with flag set to value (replacing the base's own value of that flag)."""
    argv = list(base)
    if flag in argv:
        i = argv.index(flag)
        del argv[i : i + 2]
    return [*argv, flag, value]


def spec_actions(parser: argparse.ArgumentParser) -> dict[str, object]:
    """flag -> Spec, for every option declared with core.options (subparsers included)."""
    found = {}
    for action in parser._actions:
        spec = getattr(action.type, "spec", None)
        if spec is not None and action.option_strings:
            found[action.option_strings[0]] = spec
    return found


def subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


def commands(fx: Fixtures) -> dict[str, dict]:
    """command -> how to fuzz it: its parser, the argv a value goes into, how a value runs, path flags."""
    import core.bench.__main__ as bench
    import core.corpus.__main__ as corpus
    import core.evaluate as evaluate
    import core.experiments.__main__ as experiments
    import core.generate as generate
    import core.gradcheck as gradcheck
    import core.judge as judge
    import core.train as train

    def gradcheck_parser():
        captured = {}

        class Stop(Exception):
            pass

        original = gradcheck.ArgumentParser.parse_args

        def grab(self, *a, **k):
            captured["p"] = self
            raise Stop

        gradcheck.ArgumentParser.parse_args = grab
        try:
            gradcheck.main([])
        except Stop:
            pass
        finally:
            gradcheck.ArgumentParser.parse_args = original
        return captured["p"]

    exp = experiments.build_parser()
    poem = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"
    budget = ["--budget-steps", "5", "--dry-run"]
    tones = str(fx.root / "tones.json")
    return {
        "core.train": dict(
            module="core.train",
            parser=train.build_parser(),
            base=lambda: [*train_base(fx), "--run-dir", fx.fresh()],
            paths=["--corpus", "--run-dir", "--checkpoints", "--resume"],
            check=check_train,
        ),
        "core.generate": dict(
            module="core.generate",
            parser=generate.build_parser(),
            base=lambda: [str(fx.checkpoint), "--start", "山", "--json"],
            paths=[0],
        ),
        "core.evaluate": dict(
            module="core.evaluate",
            parser=evaluate.build_parser(),
            base=lambda: [str(fx.checkpoint), "--json"],
            paths=[0, "--corpus"],
        ),
        "core.corpus stats": dict(
            module="core.corpus",
            parser=subparser(corpus.build_parser(), "stats"),
            prefix=["stats"],
            base=lambda: ["--corpus", str(fx.corpus), "--json"],
            paths=["--corpus"],
        ),
        "core.corpus fetch": dict(
            module="core.corpus",
            parser=subparser(corpus.build_parser(), "fetch"),
            prefix=["fetch"],
            base=lambda: ["--force"],
            paths=["--source"],
            env={"POEMTUI_DATA": str(fx.data)},
        ),
        "core.gelv": dict(
            module="core.gelv",
            parser=None,
            base=lambda: [poem, "--json"],
            positional_text=True,
            texts=["--pattern"],
        ),
        "core.gelv build-data": dict(
            module="core.gelv",
            parser=None,
            prefix=["build-data"],
            base=lambda: ["--source", str(fx.empty_source), "--out", tones],
            paths=["--out", "--source"],
        ),
        "core.judge": dict(parser=judge.build_parser(), parse_only=True, base=lambda: [str(fx.checkpoint)]),
        "core.bench": dict(parser=bench.build_parser(), parse_only=True, base=lambda: ["--quick"]),
        "core.gradcheck": dict(parser=gradcheck_parser(), parse_only=True, base=lambda: []),
        "core.experiments optimizers": dict(
            parser=subparser(exp, "optimizers"), parse_only=True, base=lambda: list(budget)
        ),
        "core.experiments lr-sweep": dict(
            parser=subparser(exp, "lr-sweep"), parse_only=True, base=lambda: list(budget)
        ),
        "core.experiments init": dict(parser=subparser(exp, "init"), parse_only=True, base=lambda: []),
    }


def check_train(argv: list[str], outcome: str) -> tuple[str, str]:
    """After a core.train that exited 0: nothing lost (last loads, the log ends with done)."""
    if outcome != "ran" or "--help" in argv:
        return outcome, ""
    from core.runs.checkpoint import load_checkpoint
    from core.runs.metrics import read_events

    run_dir = Path(argv[argv.index("--run-dir") + 1]) if "--run-dir" in argv else None
    if "--resume" in argv and run_dir is None:
        run_dir = Path(argv[argv.index("--resume") + 1]).parent
    if run_dir is None:
        return outcome, ""
    try:
        load_checkpoint(run_dir / "last.safetensors")
    except Exception as exc:
        return "other", f"exit 0 but last does not load: {exc}"
    events = read_events(run_dir)
    if not events or events[-1]["event"] != "done":
        return "other", "exit 0 but metrics.jsonl has no done event"
    return outcome, ""


# --- the run ---------------------------------------------------------------------------------------------


class Tally:
    def __init__(self):
        self.counts: dict[str, Counter] = defaultdict(Counter)
        self.failures: list[dict] = []
        self.slowest: dict[str, float] = defaultdict(float)

    def add(self, command: str, kind: str, argv: list[str], outcome: str, detail: str, seconds: float):
        self.counts[command][outcome] += 1
        self.counts[command][f"inputs:{kind}"] += 1
        self.slowest[command] = max(self.slowest[command], seconds)
        if outcome in ("traceback", "hang", "other"):
            self.failures.append({"command": command, "argv": argv, "outcome": outcome, "detail": detail})


def fuzz(examples: int, seed: int, only: list[str] | None) -> Tally:
    from core.generation.settings import SampleSettings
    from core.training.settings import TrainConfig

    tally = Tally()
    root = Path(tempfile.mkdtemp(prefix="poemtui-fuzz-"))
    fx = Fixtures(root)
    n_specials = 0
    os.environ.setdefault("POEMTUI_MEMORY_AVAILABLE", "1G")
    cfg = settings(
        max_examples=examples, database=None, derandomize=True, deadline=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    random.seed(seed)

    for name, c in commands(fx).items():
        if only and name not in only:
            continue
        prefix = c.get("prefix", [])
        env = c.get("env", {})
        saved_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        started = time.monotonic()

        def one(argv: list[str], kind: str, c=c, name=name, prefix=prefix):
            t0 = time.monotonic()
            if c.get("parse_only"):
                outcome, detail = parse_only(c["parser"], argv)
            else:
                outcome, detail = run_command(c["module"], prefix + argv)
                if c.get("check"):
                    outcome, detail = c["check"](argv, outcome) if outcome == "ran" else (outcome, detail)
            tally.add(name, kind, argv, outcome, detail, time.monotonic() - t0)

        flags = spec_actions(c["parser"]) if c["parser"] is not None else {}
        for flag, spec in flags.items():
            drawn(
                cfg,
                strategy_for(spec),
                lambda value, flag=flag, c=c: one(with_flag(c["base"](), flag, value), "option"),
            )
        if c.get("positional_text"):
            poems = st.one_of(
                st.sampled_from(NASTY_TEXT), st.text(max_size=80), st.binary(max_size=40).map(os.fsdecode)
            )
            drawn(cfg, poems, lambda value, c=c: one([value, *c["base"]()[1:]], "positional"))
        for flag in c.get("texts", []):
            words = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=30))
            drawn(
                cfg, words, lambda value, flag=flag, c=c: one(with_flag(c["base"](), flag, value), "option")
            )
        for where in c.get("paths", []):
            n_specials += 1  # fresh ones for each flag: an output flag may have created "missing"
            for path in special_files(root / f"special-{n_specials}").values():
                base = c["base"]()
                argv = [path, *base[1:]] if where == 0 else with_flag(base, where, path)
                one(argv, "special file")
        sys.stderr.write(f"{name}: {dict(tally.counts[name])} in {time.monotonic() - started:.0f} s\n")
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    if not only or "form fields" in only:
        for settings_class in (TrainConfig, SampleSettings):
            for spec in settings_class.specs().values():
                drawn(cfg, strategy_for(spec), lambda value, spec=spec: tally.add(
                    "workbench form fields", "field", [spec.name, value], *field_outcome(spec, value), 0.0
                ))  # fmt: skip
    return tally


def drawn(cfg, strategy, run_one) -> None:
    """run_one(value) for the values hypothesis draws from strategy (as many as cfg allows)."""

    @cfg
    @given(value=strategy)
    def attempt(value):
        run_one(value)

    attempt()


def field_outcome(spec, value: str) -> tuple[str, str]:
    """A workbench form field typed as `value`: parsed to a valid value, refused in one line, or worse."""
    from core.options import OptionError

    try:
        parsed = spec.parse(value)
    except OptionError as exc:
        return ("refused", str(exc)) if "\n" not in str(exc) else ("other", str(exc))
    except Exception:
        return "traceback", traceback.format_exc(limit=3)
    if spec.problem(parsed) is None:
        return "ran", ""
    return "other", f"{spec.name}: {value!r} parsed to a bad value {parsed!r}"


def table(tally: Tally) -> str:
    rows = [
        "| command | inputs | options / fields | special files | ran (exit 0) | refused in one line (exit 2) "
        "| tracebacks | hangs > 60 s | other | slowest input |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    total = Counter()
    for name, c in tally.counts.items():
        inputs = sum(v for k, v in c.items() if k.startswith("inputs:"))
        total.update({k: v for k, v in c.items()})
        rows.append(
            f"| {name} | {inputs} | {c['inputs:option'] + c['inputs:positional'] + c['inputs:field']} "
            f"| {c['inputs:special file']} | {c['ran']} | {c['refused']} | {c['traceback']} | {c['hang']} "
            f"| {c['other']} | {tally.slowest[name]:.1f} s |"
        )
    inputs = sum(v for k, v in total.items() if k.startswith("inputs:"))
    rows.append(
        f"| **all** | **{inputs}** | | | **{total['ran']}** | **{total['refused']}** "
        f"| **{total['traceback']}** | **{total['hang']}** | **{total['other']}** | |"
    )
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=25, help="hypothesis examples per option (default 25)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the counts and the failures here")
    p.add_argument("--only", nargs="+", help="commands to fuzz (names as in the table)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    start = time.monotonic()
    tally = fuzz(args.examples, args.seed, args.only)
    print(table(tally))
    print(f"\n{len(tally.failures)} failures; {time.monotonic() - start:.0f} s")
    for failure in tally.failures[:30]:
        print(json.dumps(failure, default=str)[:800])
    if args.json:
        args.json.write_text(
            json.dumps(
                {"counts": tally.counts, "failures": tally.failures},
                default=str,
                indent=1,
            ),
            encoding="utf-8",
        )
    return 0 if not tally.failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
