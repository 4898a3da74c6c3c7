"""Obtain the chinese-poetry corpus into data/: `npm pack`, check the sha512 integrity, keep what we use.

The package is extracted into a temporary folder inside data/ and renamed into place, and the marker
`data/chinese-poetry-2.0.1/.complete` is written last: its presence means the corpus is whole (the
Makefile relies on that). A second run sees the marker and does nothing. Only the standard library is
imported here, so the idempotent path costs a Python start-up and a few stat calls.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from core.errors import CorpusError
from core.paths import kind_of, open_input, why

PACKAGE = "chinese-poetry"
VERSION = "2.0.1"
INTEGRITY = "sha512-KtYARvV7CWNtax0na9+Jn6PlhGgSoid7PWyDzXI4KsCEm2odZcqEQyval5koaLygZnM/EQ3lfJ//25K8p3uHNg=="
PACKAGE_DIRNAME = f"{PACKAGE}-{VERSION}"
MARKER = ".complete"

# Paths inside the npm package (and under data/chinese-poetry-2.0.1/) of the files we keep.
TANG300_FILE = "dist/mengxue/tangshisanbaishou.json"
QUANTANGSHI_GLOB = "dist/quantangshi/poet.tang.*.json"
STRAINS_GLOB = "dist/strains/json/poet.tang.*.json"
_WANTED = re.compile(
    r"dist/(quantangshi/poet\.tang\.\d+\.json|mengxue/tangshisanbaishou\.json|strains/json/poet\.tang\.\d+\.json)"
)
# The same files in a checkout of github.com/chinese-poetry/chinese-poetry.
_REPO_LAYOUT = {"全唐诗": "dist/quantangshi", "蒙学": "dist/mengxue", "strains/json": "dist/strains/json"}
NPM_COUNTS = {"dist/quantangshi": 58, "dist/mengxue": 1, "dist/strains/json": 58}

HOW_TO_GET = (
    "npm not found: install Node.js (npm) and run `python -m core.corpus fetch`, or run "
    "`python -m core.corpus fetch --source DIR` with a checkout of github.com/chinese-poetry/chinese-poetry, "
    f"an unpacked `npm pack {PACKAGE}@{VERSION}`, or its .tgz"
)

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def repo_root() -> Path:
    """The folder holding the core package (the repository when run from a checkout)."""
    return Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """data/ of the repository, or $POEMTUI_DATA (tests and read-only checkouts point it elsewhere)."""
    override = os.environ.get("POEMTUI_DATA")
    return Path(override).expanduser().resolve() if override else repo_root() / "data"


def package_dir(data: Path | None = None) -> Path:
    """data/chinese-poetry-2.0.1, once fetch has completed; CorpusError otherwise."""
    pkg = (data or data_dir()) / PACKAGE_DIRNAME
    if not (pkg / MARKER).is_file():
        raise CorpusError("corpus not fetched: run `python -m core.corpus fetch`")
    return pkg


def read_marker(pkg: Path) -> dict:
    try:
        return json.loads((pkg / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def missing_or_truncated(pkg: Path) -> str | None:
    """The first file the marker lists that is absent or has another size than when fetched, if any."""
    files = read_marker(pkg).get("files")
    if not isinstance(files, dict) or not files:
        return f"{pkg / MARKER}: unreadable marker"
    for rel, size in files.items():
        path = pkg / rel
        try:
            actual = path.stat().st_size
        except OSError:
            return f"{path}: missing"
        if actual != size:
            return f"{path}: truncated or modified ({actual} bytes, fetched {size})"
    return None


def integrity_of(path: Path) -> str:
    """npm's integrity string (Subresource Integrity form) of a file."""
    digest = hashlib.sha512()
    with open_input(path, "package file", CorpusError) as f:
        try:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        except OSError as exc:
            raise CorpusError(f"{path}: cannot read ({why(exc)})") from None
    return "sha512-" + base64.b64encode(digest.digest()).decode("ascii")


def fetch(
    source: Path | None = None, *, force: bool = False, data: Path | None = None, log: Log = _stderr
) -> Path:
    """Put the corpus under data/ (see the module docstring); return data/chinese-poetry-2.0.1."""
    if source is not None:
        _source_kind(source)  # a FIFO, a device, a loop or a missing path: one line, before anything else
    data = data or data_dir()
    pkg = data / PACKAGE_DIRNAME
    if (pkg / MARKER).is_file() and not force:
        problem = missing_or_truncated(pkg)
        if problem is None:
            log(f"corpus already fetched in {pkg} (nothing to do; --force fetches again)")
            return pkg
        log(f"{problem}; fetching again")
    if source is None and shutil.which("npm") is None:
        raise CorpusError(HOW_TO_GET)
    data.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=data))
    try:
        if source is None:
            origin, integrity = _from_npm(data, staging, log), INTEGRITY
        elif _source_kind(source) == "file":
            origin, integrity = _from_tarball(source, staging, log), INTEGRITY
        else:
            origin, integrity = _from_directory(source, staging), None
        _check_counts(staging, strict=integrity is not None)
        _install(staging, pkg)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    files = {p.relative_to(pkg).as_posix(): p.stat().st_size for p in sorted(pkg.rglob("*.json"))}
    marker = {"package": f"{PACKAGE}@{VERSION}", "integrity": integrity, "source": origin, "files": files}
    _write_atomic(pkg / MARKER, json.dumps(marker, ensure_ascii=False, indent=1))
    log(f"corpus ready in {pkg}: {len(files)} files from {origin} ({time.monotonic() - start:.1f} s)")
    return pkg


def _source_kind(source: Path) -> str:
    """ "file" (a .tgz) or "folder"; anything else is refused in one line (a FIFO would block a reader)."""
    try:
        mode = os.stat(source).st_mode
    except OSError as exc:
        raise CorpusError(f"--source {source}: {why(exc)}") from None
    except ValueError:
        raise CorpusError(f"--source {source!r}: not a valid path") from None
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    raise CorpusError(f"--source {source}: {kind_of(mode)}, not a folder or a .tgz")


def _from_npm(data: Path, staging: Path, log: Log) -> str:
    """`npm pack` into a download folder, verify, extract; the download is deleted in every case."""
    download = Path(tempfile.mkdtemp(prefix=".download-", dir=data))
    try:
        spec = f"{PACKAGE}@{VERSION}"
        log(f"npm pack {spec} (about 85 MB)...")
        try:
            done = subprocess.run(
                ["npm", "pack", spec, "--pack-destination", str(download), "--silent"],
                cwd=download,
                capture_output=True,
                text=True,
                timeout=1800,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CorpusError(f"npm pack {spec} failed: {exc}") from exc
        tarballs = sorted(download.glob("*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise CorpusError(f"npm pack {spec} failed: {why}")
        tarball = tarballs[0]
        got = integrity_of(tarball)
        if got != INTEGRITY:
            raise CorpusError(
                f"{tarball.name}: integrity mismatch (expected {INTEGRITY[:20]}..., got {got[:20]}...); "
                "refused, download deleted"
            )
        _extract(tarball, staging)
        return "npm"
    finally:
        shutil.rmtree(download, ignore_errors=True)


def _from_tarball(tarball: Path, staging: Path, log: Log) -> str:
    """A .tgz the user obtained elsewhere: the same integrity check; the user's file is left alone."""
    got = integrity_of(tarball)
    if got != INTEGRITY:
        raise CorpusError(
            f"{tarball}: integrity mismatch (expected {INTEGRITY[:20]}..., got {got[:20]}...); refused"
        )
    log(f"{tarball}: integrity ok, extracting")
    _extract(tarball, staging)
    return str(tarball.resolve())


def _extract(tarball: Path, staging: Path) -> None:
    """Copy out only the wanted regular files; names are matched, never trusted as paths."""
    try:
        raw = open_input(tarball, "package", CorpusError)
        with raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
            for member in tar:
                rel = member.name.removeprefix("package/")
                if member.isfile() and _WANTED.fullmatch(rel):
                    target = staging / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CorpusError(f"{tarball}: cannot unpack ({exc})") from exc


def _source_files(source: Path) -> Iterator[tuple[Path, str]]:
    """(file, path inside our layout) for an unpacked npm package or a checkout of the repository."""
    npm_roots = [
        root for root in (source, source / "package") if os.path.isdir(root / "dist" / "quantangshi")
    ]
    if npm_roots:
        folders = {folder: folder for folder in NPM_COUNTS}  # the same layout as ours
        root = npm_roots[0]
    elif os.path.isdir(source / "全唐诗"):
        folders, root = _REPO_LAYOUT, source
    else:
        raise CorpusError(
            f"--source {source}: neither a chinese-poetry checkout (全唐诗/, 蒙学/) nor an unpacked npm "
            "package"
        )
    for folder, target in folders.items():
        for path in sorted((root / folder).glob("*.json")):
            rel = f"{target}/{path.name}"
            if _WANTED.fullmatch(rel):
                yield path, rel


def _from_directory(source: Path, staging: Path) -> str:
    if not os.path.isdir(source):
        raise CorpusError(f"{source}: no such file or directory")
    for path, rel in _source_files(source):
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_input(path, "corpus file", CorpusError) as src, open(target, "wb") as dst:
            try:
                shutil.copyfileobj(src, dst)  # a FIFO or a device among the files: refused, never read
            except OSError as exc:
                raise CorpusError(f"{path}: cannot copy ({why(exc)})") from None
    return str(source.resolve())


def _check_counts(staging: Path, *, strict: bool) -> None:
    """The npm package must give exactly what we expect; a checkout must at least hold both corpora."""
    if not (staging / TANG300_FILE).is_file():
        raise CorpusError(f"{TANG300_FILE}: missing from the source")
    if not any(staging.glob(QUANTANGSHI_GLOB)):
        raise CorpusError(f"{QUANTANGSHI_GLOB}: missing from the source")
    if strict:
        for folder, expected in NPM_COUNTS.items():
            found = len(list((staging / folder).glob("*.json")))
            if found != expected:
                raise CorpusError(f"{folder}: {found} files in the package, expected {expected}")


def _install(staging: Path, pkg: Path) -> None:
    """Rename the finished folder into place (replacing an older, incomplete or forced-over one)."""
    if pkg.exists():
        old = pkg.with_name(f".old-{pkg.name}-{os.getpid()}")
        pkg.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    staging.chmod(0o755)  # mkdtemp made it private
    staging.rename(pkg)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
