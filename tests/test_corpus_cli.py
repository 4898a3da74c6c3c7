"""`python -m core.corpus fetch | stats`: figures, speed, and every bad input.

Three tests start a real process: the smoke test (stats --json), a second fetch's cost as a user pays it,
and a cold build of quantangshi in another interpreter (another hash seed) equal to the cache. The rest run
the command in this process (tests/conftest.py: run_cli), environment variables included. Speed is the
process's CPU time (user + system): wall time on a shared 2-core machine measures the other users.
"""

import io
import json
import os
import resource
import shutil
import stat
import sys
import tarfile
import time
from pathlib import Path

import pytest
from conftest import assert_user_error

from core.corpus.fetch import MARKER, PACKAGE_DIRNAME, package_dir

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"


def assert_one_line_error(result, *fragments, after_progress=False):
    """Exit 2 and one `error:` line holding every fragment (fetch may first say what it is doing)."""
    line = assert_user_error(result, *fragments, after_progress=after_progress)
    assert "error: " in line


def child_cpu_seconds() -> float:
    """CPU seconds of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.fixture
def corpus_cli(cli):
    """`python -m core.corpus ...` in this process."""

    def run(*args, env=None):
        return cli("corpus", *args, env=env)

    return run


def test_stats_tang300_json(cli_process, corpus_cli, tang300):
    """The subprocess smoke test of `python -m core.corpus`."""
    stats = cli_process("corpus", "stats", "--corpus", "tang300", "--json").json()
    assert stats["corpus"] == "tang300"
    assert stats["poems"] == {"train": 256, "dev": 64, "test": 0, "total": 320}
    assert stats["characters"] == sum(map(len, tang300.poems))
    assert stats["vocab_size"] == len(tang300.build_vocab())
    assert 0 < stats["dev_oov_rate"] < 0.1
    assert stats["dropped"] == {}
    assert 0 < stats["padding_fraction"] < 1
    assert sum(stats["length_histogram"].values()) == 320
    assert stats["split_seed"] == tang300.split_seed
    assert stats["splits_digest"] == tang300.splits_digest()
    rare = corpus_cli("stats", "--corpus", "tang300", "--json", "--min-freq", "2").json()
    assert rare["vocab_size"] < stats["vocab_size"] and rare["dev_oov_rate"] > stats["dev_oov_rate"]


def test_stats_quantangshi_cold_load_is_fast_and_matches(cli_process, quantangshi):
    start, cpu = time.monotonic(), child_cpu_seconds()
    stats = cli_process("corpus", "stats", "--corpus", "quantangshi", "--json", "--no-cache").json()
    wall, cpu = time.monotonic() - start, child_cpu_seconds() - cpu
    assert stats["cache"] == "off"
    assert cpu < 10 and 0 < stats["load_seconds"] < wall
    assert stats["poems"]["total"] >= 35000
    assert stats["splits_digest"] == quantangshi.splits_digest()  # fresh build == cached, in another process
    assert stats["padding_fraction"] < 0.05
    assert stats["dropped"]["irregular_form"] > 10000


def test_stats_human_output(corpus_cli):
    proc = corpus_cli("stats", "--corpus", "tang300")
    assert proc.status == 0
    assert "train 256 / dev 64" in proc.out


def test_user_corpus_text_file(corpus_cli):
    stats = corpus_cli("stats", "--corpus", str(FIXTURES / "user_poems.txt"), "--json").json()
    assert stats["poems"]["total"] == 3
    assert stats["poems"]["test"] == 0  # fewer than 100 poems: 80/20
    assert stats["dropped"] == {"placeholder": 1, "duplicate": 1}


def test_user_corpus_json_and_large_split(tmp_path, tang300):
    from core.corpus import load_corpus

    poems = tang300.poems[:150]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([{"paragraphs": [p]} for p in poems], ensure_ascii=False), encoding="utf-8")
    corpus = load_corpus(path)
    assert corpus.name == str(path.resolve())
    assert sorted(corpus.poems) == sorted(poems)
    assert [len(corpus.splits[s]) for s in ("train", "dev", "test")] == [134, 8, 8]


@pytest.mark.parametrize(
    ("name", "fault"),
    [
        ("bad_utf8.txt", "not valid UTF-8 (byte 0xe5 at offset 37)"),
        ("truncated.json", "truncated JSON"),
        ("malformed.json", "malformed JSON (line 2"),
        ("no_poems.json", "no poems found"),
        ("bad_paragraphs.json", '"paragraphs" is not a list of strings'),
        ("only_broken.txt", "no poems left after cleaning"),
        ("missing.txt", "missing"),
    ],
)
def test_bad_user_files_exit_2_with_one_line(corpus_cli, name, fault):
    path = FIXTURES / name
    proc = corpus_cli("stats", "--corpus", str(path), "--json")
    assert_one_line_error(proc, str(path), fault)


def test_unknown_corpus_and_bad_flags(corpus_cli):
    assert_one_line_error(corpus_cli("stats", "--corpus", "tang3000"), "unknown corpus 'tang3000'")
    assert_one_line_error(corpus_cli("stats", "--corpus", "tang300", "--forms", "sonnet"), "--forms")
    assert_one_line_error(corpus_cli("stats", "--corpus", "tang300", "--batch-size", "0"), "--batch-size")


@pytest.fixture
def linked_package(tmp_path):
    """A data dir whose package links the real files, except tang300, which is a copy we may damage."""
    real = package_dir()
    pkg = tmp_path / "data" / PACKAGE_DIRNAME
    (pkg / "dist" / "mengxue").mkdir(parents=True)
    (pkg / "dist" / "quantangshi").mkdir()
    for path in (real / "dist" / "quantangshi").iterdir():
        (pkg / "dist" / "quantangshi" / path.name).symlink_to(path)
    shutil.copy(real / "dist/mengxue/tangshisanbaishou.json", pkg / "dist/mengxue/tangshisanbaishou.json")
    shutil.copy(real / MARKER, pkg / MARKER)
    return pkg


def test_package_file_missing_or_truncated(corpus_cli, linked_package):
    env = {"POEMTUI_DATA": str(linked_package.parent)}
    tang = linked_package / "dist/mengxue/tangshisanbaishou.json"
    tang.write_bytes(tang.read_bytes()[:5000])
    assert_one_line_error(corpus_cli("stats", "--corpus", "tang300", env=env), str(tang), "truncated")
    gone = linked_package / "dist/quantangshi/poet.tang.3000.json"
    gone.unlink()
    assert_one_line_error(corpus_cli("stats", "--corpus", "quantangshi", env=env), str(gone), "missing")


def test_not_fetched(corpus_cli, tmp_path):
    proc = corpus_cli("stats", "--corpus", "tang300", env={"POEMTUI_DATA": str(tmp_path)})
    assert_one_line_error(proc, "corpus not fetched: run `python -m core.corpus fetch`")


def test_fetch_is_idempotent_and_fast(cli_process):
    """A second fetch, as a user runs it: a new interpreter, no torch, no hashing of the package again."""
    marker = package_dir() / MARKER
    before = marker.stat().st_mtime_ns
    cpu = child_cpu_seconds()
    proc = cli_process("corpus", "fetch")
    cpu = child_cpu_seconds() - cpu
    assert proc.status == 0, proc.err
    assert "nothing to do" in proc.err
    assert cpu < 1.0
    assert marker.stat().st_mtime_ns == before


def test_fetch_without_npm_says_how_to_get_the_corpus(corpus_cli, tmp_path):
    (tmp_path / "bin").mkdir()
    env = {"POEMTUI_DATA": str(tmp_path / "data"), "PATH": str(tmp_path / "bin")}
    assert_one_line_error(corpus_cli("fetch", env=env), "npm not found", "--source")
    assert not (tmp_path / "data" / PACKAGE_DIRNAME).exists()


def fake_tarball() -> bytes:
    """A package that looks right but is not chinese-poetry@2.0.1 (its sha512 differs)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = b'{"content": []}'
        info = tarfile.TarInfo("package/dist/mengxue/tangshisanbaishou.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


FAKE_NPM = """#!{python}
# Stands in for `npm pack` without a network: writes the tarball it is given, as npm would.
import shutil, sys
dest = sys.argv[sys.argv.index("--pack-destination") + 1]
shutil.copy({tarball!r}, dest + "/chinese-poetry-2.0.1.tgz")
print("chinese-poetry-2.0.1.tgz")
"""


def test_fetch_refuses_a_download_with_the_wrong_integrity(corpus_cli, tmp_path):
    tarball = tmp_path / "fake.tgz"
    tarball.write_bytes(fake_tarball())
    npm = tmp_path / "bin" / "npm"
    npm.parent.mkdir()
    npm.write_text(FAKE_NPM.format(python=sys.executable, tarball=str(tarball)))
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR)
    data = tmp_path / "data"
    env = {"POEMTUI_DATA": str(data), "PATH": f"{npm.parent}{os.pathsep}{os.environ['PATH']}"}
    proc = corpus_cli("fetch", env=env)
    assert_one_line_error(
        proc, "chinese-poetry-2.0.1.tgz: integrity mismatch", "deleted", after_progress=True
    )
    assert sorted(p.name for p in data.iterdir()) == []  # no download, no partial package left
    # the same tarball handed over with --source is refused too, and the user's file left alone
    proc = corpus_cli("fetch", "--source", str(tarball), env=env)
    assert_one_line_error(proc, str(tarball), "integrity mismatch", after_progress=True)
    assert tarball.exists() and not (data / PACKAGE_DIRNAME).exists()


def test_fetch_from_a_repository_checkout(corpus_cli, tmp_path, tang300):
    real = package_dir() / "dist"
    src = tmp_path / "chinese-poetry"
    (src / "蒙学").mkdir(parents=True)
    (src / "strains").mkdir()
    (src / "全唐诗").symlink_to(real / "quantangshi")
    (src / "strains" / "json").symlink_to(real / "strains" / "json")
    (src / "蒙学" / "tangshisanbaishou.json").symlink_to(real / "mengxue" / "tangshisanbaishou.json")
    (src / "蒙学" / "qianjiashi.json").write_text("[]")  # not ours: left out
    env = {"POEMTUI_DATA": str(tmp_path / "data")}
    proc = corpus_cli("fetch", "--source", str(src), env=env)
    assert proc.status == 0, proc.err
    pkg = tmp_path / "data" / PACKAGE_DIRNAME
    marker = json.loads((pkg / MARKER).read_text(encoding="utf-8"))
    assert marker["source"] == str(src) and marker["integrity"] is None
    assert len(marker["files"]) == 117 and not (pkg / "dist/mengxue/qianjiashi.json").exists()
    assert "nothing to do" in corpus_cli("fetch", env=env).err
    stats = corpus_cli("stats", "--corpus", "tang300", "--json", env=env).json()
    assert stats["fingerprint"] == tang300.fingerprint  # same content, same corpus, wherever it lies


def test_fetch_from_an_unpacked_npm_package(corpus_cli, tmp_path):
    real = package_dir() / "dist"
    dist = tmp_path / "package" / "dist"
    (dist / "mengxue").mkdir(parents=True)
    (dist / "quantangshi").symlink_to(real / "quantangshi")
    (dist / "mengxue" / "tangshisanbaishou.json").symlink_to(real / "mengxue" / "tangshisanbaishou.json")
    env = {"POEMTUI_DATA": str(tmp_path / "data")}
    proc = corpus_cli("fetch", "--source", str(tmp_path), env=env)
    assert proc.status == 0, proc.err
    files = json.loads((tmp_path / "data" / PACKAGE_DIRNAME / MARKER).read_text())["files"]
    assert len(files) == 59  # no strains in this source


def test_fetch_from_something_else(corpus_cli, tmp_path):
    env = {"POEMTUI_DATA": str(tmp_path / "data")}
    assert_one_line_error(corpus_cli("fetch", "--source", str(FIXTURES), env=env), str(FIXTURES), "neither")
    assert_one_line_error(corpus_cli("fetch", "--source", str(tmp_path / "nope"), env=env), "nope")
