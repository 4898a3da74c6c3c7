"""Loading a checkpoint never runs code, and a hostile or broken file is one clear line (issue 8, items 1-2).

Every entry point that accepts a checkpoint is tried: core.runs.checkpoint.load_checkpoint and read_meta in
process, and `python -m core.evaluate`, `python -m core.generate`, `python -m core.train --resume` (every
file through each command in process, through core.cli.run; and once each as real subprocesses). The hostile
`.pt` files are real exploits: a control test shows that torch.load(weights_only=False) runs their payload.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import random
import shlex
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
from conftest import COMMANDS, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from core.errors import CheckpointError, PoemError
from core.runs import checkpoint as ck
from core.runs import validate
from core.runs.checkpoint import META_KEY, load_checkpoint, read_meta
from core.runs.versions import MIN_TORCH, require_torch

REPO = Path(__file__).resolve().parents[1]
COUNTS: dict[str, int] = {}  # reported at the end of the fuzz tests (docs/RELIABILITY.md quotes them)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster, and on a shared 2-core machine much faster (no OpenMP barrier
    waiting for a descheduled second thread). What is tested does not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- a real checkpoint, and ways to take it apart -----------------------------------------------------------


@pytest.fixture(scope="module")
def real(short_run_checkpoint) -> Path:
    """last.safetensors of a real (tiny) training run on tang300, stopped after 3 steps (read-only)."""
    return short_run_checkpoint


def split(data: bytes) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """(safetensors header, our metadata, tensors), read with safetensors and json only (not our loader)."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    return header, json.loads(header["__metadata__"][META_KEY]), st_load(data)


def build(meta: dict, tensors: dict[str, torch.Tensor], checksum: bool = True) -> bytes:
    """A safetensors file with this metadata, bypassing every check of save_checkpoint."""
    meta = dict(meta)
    if checksum:
        meta["tensors_sha256"] = ck.tensors_digest(tensors)
    return st_save(tensors, metadata={META_KEY: json.dumps(meta, ensure_ascii=False)})


def edited(real: Path, edit_meta=None, edit_tensors=None, checksum: bool = True) -> bytes:
    _, meta, tensors = split(real.read_bytes())
    if edit_meta:
        edit_meta(meta)
    if edit_tensors:
        edit_tensors(tensors)
    return build(meta, tensors, checksum)


def assert_one_line(message: str) -> None:
    assert message and "\n" not in message.strip() and "Traceback" not in message, message


def refused(path: Path, *, header_only_ok: bool = False) -> str:
    """load_checkpoint refuses `path` with one CheckpointError line; read_meta too unless header_only_ok."""
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert_one_line(str(exc.value))
    if not header_only_ok:
        with pytest.raises(CheckpointError) as meta_exc:
            read_meta(path)
        assert_one_line(str(meta_exc.value))
    return str(exc.value)


def entry_argv(entry: str, path: Path, tmp: Path) -> tuple[str, list[str]]:
    return {
        "evaluate": ("evaluate", [str(path), "--json"]),
        "generate": ("generate", [str(path), "--start", "山", "--json"]),
        "train": ("train", ["--resume", str(path), "--run-dir", str(tmp / "resumed"), "--max-steps", "1"]),
    }[entry]


def run_clis(
    commands: list[list[str]], env: dict | None = None, timeout: float = 300
) -> list[subprocess.CompletedProcess]:
    """Several `python -m ...` at once (each start costs seconds of imports)."""
    procs = [
        subprocess.Popen(
            [sys.executable, *argv],
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in commands
    ]
    out = []
    for argv, proc in zip(commands, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr))
    return out


ENTRIES = ("load_checkpoint", "read_meta", "evaluate", "generate", "train")


def command_refuses(entry: str, path: Path, tmp: Path) -> str:
    """The command exits 2 with one line on stderr and nothing on stdout; returns the line."""
    command, argv = entry_argv(entry, path, tmp)
    out = run_cli(command, *argv)
    assert out.status == 2, (entry, path.name, out.status, out.err)
    assert_one_line(out.err)
    assert out.out == "", out.out
    return out.err


def assert_entry_refuses(entry: str, path: Path, tmp: Path) -> str:
    if entry in ("load_checkpoint", "read_meta"):
        with pytest.raises(CheckpointError) as exc:
            (load_checkpoint if entry == "load_checkpoint" else read_meta)(path)
        assert_one_line(str(exc.value))
        return str(exc.value)
    return command_refuses(entry, path, tmp)


# --- 1. loading never executes code -------------------------------------------------------------------------


class RunsCode:
    """Unpickling this runs a shell command (the classic torch.load exploit)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def hostile_files(folder: Path, marker: Path) -> dict[str, Path]:
    """.pt files whose pickle would `touch marker`: in the weights, the optimizer state, the metadata..."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = RunsCode(f"touch {shlex.quote(str(marker))}")
    weights = {"embedding.weight": payload, "head.bias": torch.zeros(3)}
    optimizer = {
        "model": {"head.bias": torch.zeros(3)},
        "optimizer": {"state": {0: {"exp_avg": payload}}, "param_groups": [{"lr": 0.1, "params": [0]}]},
    }
    metadata = {"model": {"head.bias": torch.zeros(3)}, "meta": {"vocab": payload, "epoch": 3}}
    files = {}
    for name, obj in (("weights", weights), ("optimizer", optimizer), ("metadata", metadata)):
        files[name] = folder / f"{name}.pt"
        torch.save(obj, files[name])
    files["legacy"] = folder / "legacy.pt"  # torch's pre-1.6 format: a bare pickle stream
    torch.save(weights, files["legacy"], _use_new_zipfile_serialization=False)
    files["renamed"] = folder / "renamed.safetensors"  # a .pt under our own extension
    files["renamed"].write_bytes(files["optimizer"].read_bytes())
    files["protocol0"] = folder / "protocol0.safetensors"  # a text pickle: starts with "cposix\nsystem"
    files["protocol0"].write_bytes(pickle.dumps(payload, protocol=0))
    return files


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    marker = folder / "MARKER"
    return hostile_files(folder / "files", marker), marker


def test_the_hostile_files_are_real_exploits(hostile):
    """Control: torch.load(weights_only=False) and pickle run the payload; weights_only=True refuses."""
    files, marker = hostile
    for name in ("weights", "optimizer", "metadata", "legacy"):  # "renamed" holds optimizer's bytes
        marker.unlink(missing_ok=True)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(files[name], weights_only=True)
        assert not marker.exists()
        torch.load(files[name], weights_only=False)
        assert marker.exists(), f"{name}: the payload did not run; the refusal tests would prove nothing"
    marker.unlink()
    pickle.loads(files["protocol0"].read_bytes())
    assert marker.exists()
    marker.unlink()


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("variant", ["weights", "optimizer", "metadata", "legacy", "renamed", "protocol0"])
def test_hostile_pickles_are_refused_without_running(hostile, variant, entry, tmp_path):
    files, marker = hostile
    marker.unlink(missing_ok=True)
    message = assert_entry_refuses(entry, files[variant], tmp_path)
    assert not marker.exists(), "the payload ran"
    if variant != "protocol0":  # a zip or a binary pickle is named as such
        assert "pickle" in message or "zip" in message, message


def test_hostile_and_broken_files_are_refused_by_the_real_commands(hostile, real, tmp_path):
    """Each command once as a real process (the in-process tests above and below try every file with
    every command): exit 2, one line, nothing on stdout, no payload run, no run folder made."""
    files, marker = hostile
    marker.unlink(missing_ok=True)
    broken = broken_files(real, tmp_path / "broken")
    commands = [
        ["-m", "core.evaluate", str(files["weights"]), "--json"],
        ["-m", "core.generate", str(broken["vocab"][0]), "--start", "山"],
        ["-m", "core.train", "--resume", str(files["metadata"]), "--run-dir", str(tmp_path / "r")],
    ]
    for out, needle in zip(run_clis(commands), ["never", "|V|=", "never"], strict=True):
        assert out.returncode == 2, (out.args, out.returncode, out.stderr)
        assert_one_line(out.stderr)
        assert needle in out.stderr and out.stdout == ""
    assert not marker.exists()
    assert not (tmp_path / "r").exists()


CODE_STRINGS = {
    "__class__": "os.system",
    "__reduce__": ["os.system", ["touch MARKER"]],
    "py/object": "posix.system",
    "!!python/object/apply:os.system": ["touch MARKER"],
    "code": "__import__('os').system('touch MARKER')",
    "__float__": "__import__('os').system('touch MARKER')",
}


def test_metadata_is_data_never_evaluated(real, tmp_path):
    """Code-looking metadata is kept verbatim as strings, or refused; nothing is imported or run."""
    marker = tmp_path / "MARKER"
    code = {k: json.loads(json.dumps(v).replace("MARKER", str(marker))) for k, v in CODE_STRINGS.items()}
    text = code["code"]

    def add_everywhere(meta):
        meta["note"] = code
        meta["corpus"]["note"] = code
        meta["progress"]["note"] = {"__float__": text}
        meta["versions"] = {"torch": text}

    kept = tmp_path / "kept.safetensors"
    kept.write_bytes(edited(real, add_everywhere))
    ckpt = load_checkpoint(kept)
    assert ckpt.meta["note"] == code and ckpt.meta["corpus"]["note"] == code
    assert ckpt.meta["progress"]["note"] == {"__float__": text}  # not a float, not evaluated: data
    assert read_meta(kept)["versions"] == {"torch": text}
    ckpt.build_model()

    refusals = {
        "best_dev_ppl": lambda m: m["progress"].update(best_dev_ppl={"__float__": text}),
        "lstm_impl": lambda m: m["model"].update(lstm_impl=text),
        "init": lambda m: m["model"].update(init=code),
        "vocab": lambda m: m["vocab"]["itos"].append(text),
        "format": lambda m: m.update(format=code),
        "scheduler": lambda m: m["scheduler"].update(step=text),  # would replace the method step()
    }
    for name, edit in refusals.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(edited(real, edit))
        refused(path)
    # a corpus "name" is a name: evaluate looks for a file of that name and says it is missing
    path = tmp_path / "corpus-name.safetensors"
    path.write_bytes(edited(real, lambda m: m["corpus"].update(name=text)))
    assert "__import__" in command_refuses("evaluate", path, tmp_path)
    assert not marker.exists()


UNSAFE_CALLS = {("torch", "load"), ("pickle", "load"), ("pickle", "loads"), ("marshal", "loads")}
UNSAFE_CALLS |= {("numpy", "load"), ("np", "load"), ("yaml", "load"), ("dill", "load"), ("joblib", "load")}


def test_no_module_of_ours_unpickles_or_evaluates():
    """Static guard: core/ and poemtui/ never call torch.load, pickle, eval or exec."""
    found = []
    for path in sorted([*REPO.glob("core/**/*.py"), *REPO.glob("poemtui/**/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            if isinstance(f, ast.Name) and f.id in ("eval", "exec", "__import__"):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {f.id}")
            named = isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
            if named and (f.value.id, f.attr) in UNSAFE_CALLS:
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {f.value.id}.{f.attr}")
    assert not found, found


# --- torch >= 2.10 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.9.1", "2.9.1+cu121", "2.6.0", "1.13.1", "2.9"])
def test_old_torch_is_refused_with_the_cves(version):
    with pytest.raises(PoemError) as exc:
        require_torch(version)
    assert "CVE-2025-32434" in str(exc.value) and "CVE-2026-24747" in str(exc.value)
    assert version in str(exc.value) and "2.10" in str(exc.value)
    assert_one_line(str(exc.value))


@pytest.mark.parametrize("version", ["2.10.0", "2.10.0+cpu", "2.13.0", "3.0.0", "2.10"])
def test_new_torch_is_accepted(version):
    assert require_torch(version) == version


def test_commands_refuse_an_old_torch_at_start_up(real, tmp_path):
    """A real subprocess whose installed-torch metadata says 2.9.1 (a dist-info first on sys.path): the
    version gate in core.cli.run reads it and exits 2 before the command runs."""
    fake = tmp_path / "site"
    info = fake / "torch-2.9.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.9.1\n")
    env = {"PYTHONPATH": str(fake)}
    probe = run_clis([["-c", "from importlib.metadata import version; print(version('torch'))"]], env)[0]
    assert probe.stdout.strip() == "2.9.1", probe.stderr  # the fake is what the gate will read
    (out,) = run_clis([["-m", "core.evaluate", str(real), "--json"]], env)
    assert out.returncode == 2, out.stderr
    assert_one_line(out.stderr)
    assert "torch 2.9.1 is too old" in out.stderr and "CVE-2025-32434" in out.stderr
    assert out.stdout == ""
    assert MIN_TORCH == (2, 10)


@pytest.mark.parametrize("command", sorted(c for c, (_, needs_torch) in COMMANDS.items() if needs_torch))
def test_every_torch_command_passes_the_version_gate_first(command, real, tmp_path, monkeypatch):
    """The same gate, for every command that loads torch (in this process, the installed version read as
    2.9.1): exit 2 and the CVE line, whatever the arguments."""
    from core.runs import versions

    monkeypatch.setattr(versions, "version", lambda name: "2.9.1" if name == "torch" else "1.0")
    out = run_cli(command, str(real), "--json")
    assert out.status == 2, out.err
    assert_one_line(out.err)
    assert "torch 2.9.1 is too old" in out.err and "CVE-2025-32434" in out.err
    assert out.out == ""


# --- 2. hostile or broken files: one clear line -------------------------------------------------------------


def test_empty_and_cut_files(real, tmp_path):
    data = real.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    cases = {
        "empty": (b"", "empty"),
        "seven-bytes": (data[:7], "truncated"),
        "header-cut": (data[: 8 + n // 2], "truncated"),
        "tensors-cut": (data[:-1000], "truncated"),
        "last-byte-cut": (data[:-1], "truncated"),
    }
    for name, (blob, needle) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(blob)
        assert needle in refused(path), name
    rng = random.Random(8)
    offsets = sorted(rng.sample(range(len(data)), 40))
    for offset in offsets:
        path = tmp_path / "cut.safetensors"
        path.write_bytes(data[:offset])
        assert "truncated" in refused(path) or "empty" in refused(path), offset
    COUNTS["truncations"] = len(offsets) + len(cases)


def test_random_bytes(tmp_path):
    rng = random.Random(9)
    for i in range(40):
        path = tmp_path / f"noise{i}.safetensors"
        path.write_bytes(rng.randbytes(rng.choice([1, 8, 9, 100, 4096, 100_000])))
        refused(path)
    COUNTS["random_files"] = 40


def bytes_read_by_this_process() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


def read_at_most(limit: int, fn) -> str:
    """Run fn (which must raise CheckpointError) and check how many bytes this process read meanwhile."""
    if not Path("/proc/self/io").exists():
        pytest.skip("needs /proc/self/io to count bytes read")
    before = bytes_read_by_this_process()
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as exc:
        fn()
    assert bytes_read_by_this_process() - before <= limit
    assert time.perf_counter() - start < 5
    assert_one_line(str(exc.value))
    return str(exc.value)


def test_compression_bombs_are_refused_before_any_decompression(tmp_path):
    """A zip (.pt) holding 256 MiB of zeros, and a gzip of the same: nothing is decompressed or read."""
    zeros = b"\0" * (1 << 20)
    bomb = tmp_path / "bomb.pt"
    with (
        zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z,
        z.open("archive/data.pkl", "w") as f,
    ):
        for _ in range(256):
            f.write(zeros)
    gz = tmp_path / "bomb.safetensors"
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    gz.write_bytes(b"".join([*(comp.compress(zeros) for _ in range(256)), comp.flush()]))
    assert bomb.stat().st_size < 2 << 20 and gz.stat().st_size < 2 << 20
    assert "zip" in read_at_most(64 << 10, lambda: load_checkpoint(bomb))
    assert "gzip" in read_at_most(64 << 10, lambda: load_checkpoint(gz))
    assert "gzip" in read_at_most(64 << 10, lambda: read_meta(gz))


def test_size_limits_are_enforced_before_reading(real, tmp_path, monkeypatch):
    # a header length beyond the limit, at the start of a small file
    for n in (ck.MAX_HEADER_BYTES + 1, 1 << 40, (1 << 64) - 1):
        path = tmp_path / "big-header.safetensors"
        path.write_bytes(struct.pack("<Q", n) + b"{" + b" " * 100)
        assert "limit" in read_at_most(64 << 10, lambda p=path: load_checkpoint(p))
    # a valid layout whose header really is over the limit (17 MiB of metadata)
    _, meta, tensors = split(real.read_bytes())
    meta["padding"] = "x" * (ck.MAX_HEADER_BYTES + (1 << 20))
    huge = tmp_path / "huge-header.safetensors"
    huge.write_bytes(build(meta, tensors))
    assert "limit" in read_at_most(64 << 10, lambda: read_meta(huge))
    # a file over the size limit (sparse: it takes no disk) is refused from its size alone
    sparse = tmp_path / "sparse.safetensors"
    with open(sparse, "wb") as fh:
        fh.write(real.read_bytes()[:8])
        fh.truncate(ck.MAX_FILE_BYTES + 1)
    assert "limit" in read_at_most(64 << 10, lambda: load_checkpoint(sparse))
    monkeypatch.setenv("POEMTUI_MAX_CHECKPOINT_BYTES", str(real.stat().st_size - 1))
    assert "limit" in read_at_most(64 << 10, lambda: load_checkpoint(real))
    monkeypatch.setenv("POEMTUI_MAX_CHECKPOINT_BYTES", "lots")
    assert "POEMTUI_MAX_CHECKPOINT_BYTES" in refused(real)


def test_too_many_tensors_are_refused_from_the_header(tmp_path):
    path = tmp_path / "many.safetensors"
    tensors = {f"t{i}": torch.zeros(1) for i in range(validate.MAX_TENSORS + 1)}
    path.write_bytes(st_save(tensors, metadata={META_KEY: "{}"}))
    assert "over the limit" in refused(path)


def nan_at(name: str, value: float, seed: int = 0):
    def edit(tensors):
        t = tensors[name]
        t.view(-1)[random.Random(seed).randrange(t.numel())] = value

    return edit


def test_non_finite_weights_are_refused(real, tmp_path):
    for i, (name, value) in enumerate(
        [
            ("model.embedding.weight", float("nan")),
            ("model.lstm.weight_hh_l0", float("inf")),
            ("model.head.bias", float("-inf")),
            ("optim.0.exp_avg", float("nan")),
        ]
    ):
        path = tmp_path / f"nan{i}.safetensors"
        path.write_bytes(edited(real, edit_tensors=nan_at(name, value, seed=i)))
        assert "NaN or Inf" in refused(path, header_only_ok=True)
        assert name.split(".", 1)[1] in refused(path, header_only_ok=True)


def test_damaged_tensor_bytes_fail_the_checksum(real, tmp_path):
    data = bytearray(real.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    data[8 + n + (len(data) - 8 - n) // 2] ^= 0x10  # one bit, in the middle of the weights
    path = tmp_path / "flipped.safetensors"
    path.write_bytes(bytes(data))
    assert "checksum" in refused(path, header_only_ok=True)


def test_another_vocabulary_or_model_size_names_both_sizes(real, tmp_path):
    _, meta, _ = split(real.read_bytes())
    v = meta["model"]["vocab_size"]
    smaller = {"format": meta["vocab"]["format"], "itos": meta["vocab"]["itos"][:2000]}

    path = tmp_path / "vocab.safetensors"  # vocabulary of another corpus, model config unchanged
    path.write_bytes(edited(real, lambda m: m.update(vocab=smaller)))
    assert f"trained with |V|={v}" in refused(path) and "2000" in refused(path)

    path = tmp_path / "weights.safetensors"  # vocabulary and config agree; the weights do not
    path.write_bytes(edited(real, lambda m: (m.update(vocab=smaller), m["model"].update(vocab_size=2000))))
    message = refused(path, header_only_ok=True)
    assert f"trained with |V|={v}" in message and "2000" in message, message

    path = tmp_path / "hidden.safetensors"  # config says hidden 64, the weights are hidden 32
    path.write_bytes(edited(real, lambda m: m["model"].update(hidden_size=64)))
    message = refused(path, header_only_ok=True)
    assert "hidden 64" in message and "(128, 32)" in message, message


@pytest.mark.parametrize("layers, tied", [(1, False), (2, False), (3, True)])
def test_the_loader_knows_the_models_parameters_in_the_optimizers_order(layers, tied):
    """The optimizer-state check numbers parameters as model.parameters() does; a model change that
    reordered or renamed them must show up here, not as a refused checkpoint."""
    from core.model import ModelConfig, PoetryLM

    cfg = ModelConfig(vocab_size=50, embed_size=16, hidden_size=16, num_layers=layers, tie_weights=tied)
    model = PoetryLM(cfg)
    named = {name: p for name, p in model.named_parameters()}  # a tied head appears once
    assert list(cfg.parameter_shapes()) == list(named)
    assert list(cfg.parameter_shapes().values()) == [tuple(p.shape) for p in model.parameters()]


def test_files_that_are_not_files(real, tmp_path):
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    assert "not a regular file" in refused(fifo)
    assert "folder" in refused(tmp_path)
    assert "no such checkpoint" in refused(tmp_path / "missing.safetensors")
    link = tmp_path / "link.safetensors"
    link.symlink_to(real)  # a symlink to a good checkpoint is fine
    assert load_checkpoint(link).meta["progress"]["step"] == 3


def broken_files(real: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """One file per kind of damage, and a word its message must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    data = real.read_bytes()
    _, meta, _ = split(data)
    smaller = {"format": meta["vocab"]["format"], "itos": meta["vocab"]["itos"][:2000]}
    blobs = {
        "empty": (b"", "empty"),
        "truncated": (data[: len(data) // 3], "truncated"),
        "noise": (random.Random(1).randbytes(5000), "header"),
        "nan": (edited(real, edit_tensors=nan_at("model.head.weight", float("nan"))), "NaN"),
        "vocab": (edited(real, lambda m: m.update(vocab=smaller)), "|V|="),
        "foreign": (st_save({"w": torch.zeros(2)}, metadata={"x": "y"}), "not a poemtui checkpoint"),
    }
    out = {}
    for name, (blob, needle) in blobs.items():
        (folder / f"{name}.safetensors").write_bytes(blob)
        out[name] = (folder / f"{name}.safetensors", needle)
    return out


@pytest.mark.parametrize("entry", ["evaluate", "generate", "train"])
def test_every_command_reports_broken_files_in_one_line(real, tmp_path, entry):
    for name, (path, needle) in broken_files(real, tmp_path / "broken").items():
        assert needle in command_refuses(entry, path, tmp_path), name


def test_device_that_does_not_exist_is_one_line(real):
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(real, map_location="cuda:99")
    assert_one_line(str(exc.value))


# --- 2b. fuzzing: mutated checkpoint bytes; only CheckpointError may escape ---------------------------------


FUZZ = settings(
    max_examples=300,
    derandomize=True,  # the same inputs on every run and machine
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def fuzz_file(real, tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "mutant.safetensors"


class Mutant:
    """Mutated bytes that print as what was done to them (hypothesis shows this on a failure)."""

    def __init__(self, data: bytes, how: str):
        self.data, self.how = data, how

    def __repr__(self) -> str:
        return f"Mutant({self.how})"


def exercise(path: Path, mutant: Mutant) -> str:
    """Every reader of a checkpoint; returns "refused" or "loaded". Anything but our errors fails."""
    path.write_bytes(mutant.data)
    try:
        read_meta(path)
    except CheckpointError as exc:
        assert_one_line(str(exc))
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        assert_one_line(str(exc))
        return "refused"
    # what the commands do with a loaded checkpoint must not fail either: build the model, sample from it,
    # and restore the optimizer as resume does (then take a step with it)
    model = ckpt.build_model()
    try:
        from core.generation.sampler import Sampler

        Sampler(model, ckpt.vocab, script=ckpt.meta["corpus"].get("options", {}).get("script", "simplified"))
    except PoemError as exc:
        assert_one_line(str(exc))
    try:
        validate.check_resumable(ckpt)
    except CheckpointError as exc:
        assert_one_line(str(exc))
    state = ckpt.optimizer_state()
    if state is not None:
        optimizer = torch.optim.Adam(model.parameters())
        try:
            optimizer.load_state_dict(state)
        except (
            ValueError,
            KeyError,
        ):  # the trainer turns these into CheckpointError (training/backends.py)
            return "loaded"
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
    return "loaded"


def count(kind: str, outcome: str) -> None:
    COUNTS[f"{kind}_{outcome}"] = COUNTS.get(f"{kind}_{outcome}", 0) + 1


BASE: dict = {}  # the real checkpoint the mutations start from (not a strategy argument: hypothesis would
# print all of its bytes with a failure)


@st.composite
def byte_mutations(draw) -> Mutant:
    data = BASE["data"]
    blob = bytearray(data)
    (n,) = struct.unpack("<Q", data[:8])
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "length", "splice"]))
    in_header = st.integers(0, 8 + n - 1)
    at = draw(st.one_of(in_header, st.integers(0, len(blob) - 1)))
    how = f"{kind} at {at}"
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            bit = draw(st.integers(0, 7))
            blob[at] ^= 1 << bit
            how += f" bit {bit}"
            at = draw(st.one_of(in_header, st.integers(0, len(blob) - 1)))
    elif kind == "truncate":
        del blob[at:]
    elif kind == "insert":
        piece = draw(st.binary(min_size=1, max_size=64))
        blob[at:at] = piece
        how += f" {piece!r}"
    elif kind == "delete":
        size = draw(st.integers(1, 64))
        del blob[at : at + size]
        how += f" {size} bytes"
    elif kind == "length":
        choices = [0, 1, 2, n - 1, n + 1, len(blob), 1 << 32, (1 << 64) - 1]
        value = draw(st.one_of(st.sampled_from(choices), st.integers(0, (1 << 64) - 1)))
        blob[:8] = struct.pack("<Q", value)
        how = f"header length {value}"
    else:  # overwrite a stretch of the header with bytes that matter to JSON
        at = draw(in_header)
        piece = bytes(
            draw(st.lists(st.sampled_from(list(b'{}[]":,0123456789-.eE nul')), min_size=1, max_size=16))
        )
        blob[at : at + len(piece)] = piece
        how = f"splice at {at} {piece!r}"
    return Mutant(bytes(blob), how)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 70), max_value=1 << 70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from([{"__float__": "nan"}, {"__float__": "inf"}, {"__float__": "x"}, "cuda", "../x", "山"]),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=8,
)


def json_paths(obj, prefix=(), depth=0):
    """Paths into the metadata worth changing (the 2,000 vocabulary entries are sampled, not listed)."""
    yield prefix
    if depth >= 4:
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from json_paths(v, (*prefix, k), depth + 1)
    elif isinstance(obj, list):
        for i in sorted({0, 1, 3, 4, len(obj) // 2, len(obj) - 1} & set(range(len(obj)))):
            yield from json_paths(obj[i], (*prefix, i), depth + 1)


STRUCTURE_KINDS = st.sampled_from(
    ["meta", "meta", "meta-delete", "tensor-entry", "tensor-values", "tensor-set"]
)
TENSOR_VALUES = st.sampled_from([float("nan"), float("inf"), 1e30, 0.0, -1.0, 255.0])
DTYPES = st.sampled_from([torch.float16, torch.bfloat16, torch.float64, torch.int32, torch.bool])
EXTRA_TENSORS = st.sampled_from(["optim.99.exp_avg", "optim.x.y", "rng.cuda.0", "model.extra"])
HEADER_VALUES = st.one_of(
    json_values,
    st.sampled_from(["F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "C64", "XX"]),
    st.lists(st.integers(-2, 1 << 40), max_size=3),
)


@st.composite
def structure_mutations(draw) -> Mutant:
    """Well-formed files with one part changed: metadata, a tensor's values, the set of tensors, or a
    header entry (checksums recomputed unless said otherwise, so the checks behind them are reached)."""
    data, header, meta, tensors, meta_paths = (
        BASE[k] for k in ("data", "header", "meta", "tensors", "paths")
    )
    kind = draw(STRUCTURE_KINDS)
    if kind in ("meta", "meta-delete"):
        meta = json.loads(json.dumps(meta))
        path = draw(st.sampled_from(meta_paths))
        parent = meta
        for key in path[:-1]:
            parent = parent[key]
        if kind == "meta-delete" and isinstance(parent, dict):
            del parent[path[-1]]
            how = f"delete meta{list(path)}"
        else:
            parent[path[-1]] = value = draw(json_values)
            how = f"meta{list(path)} = {value!r}"
        checksum = draw(st.booleans())
        return Mutant(build(meta, tensors, checksum), how + ("" if checksum else ", no checksum"))
    tensors = dict(tensors)
    name = draw(st.sampled_from(sorted(tensors)))
    if kind == "tensor-values":
        t = tensors[name] = tensors[name].clone()
        value = draw(TENSOR_VALUES if t.is_floating_point() else st.integers(0, 255))
        if t.numel():
            t.view(-1)[draw(st.integers(0, t.numel() - 1))] = value
        return Mutant(build(meta, tensors), f"{name}[.] = {value}")
    if kind == "tensor-set":
        change = draw(st.sampled_from(["drop", "reshape", "dtype", "extra"]))
        how = f"{change} {name}"
        if change == "drop":
            del tensors[name]
        elif change == "reshape":
            tensors[name] = tensors[name].reshape(-1)[: max(tensors[name].numel() - 1, 0)].clone()
        elif change == "dtype":
            dtype = draw(DTYPES)
            tensors[name] = tensors[name].to(dtype)
            how += f" to {dtype}"
        else:
            name = draw(EXTRA_TENSORS)
            tensors[name] = torch.zeros(3)
            how = f"extra {name}"
        return Mutant(build(meta, tensors), how)
    # a header entry: dtype, shape or offsets changed, the metadata untouched
    header = json.loads(json.dumps(header))
    field = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
    header[name][field] = value = draw(HEADER_VALUES)
    raw = json.dumps(header).encode()
    (n,) = struct.unpack("<Q", data[:8])
    return Mutant(struct.pack("<Q", len(raw)) + raw + data[8 + n :], f"header[{name}][{field}] = {value!r}")


def test_fuzz_mutated_bytes(real, fuzz_file):
    BASE["data"] = real.read_bytes()

    @FUZZ
    @given(byte_mutations())
    def check(mutant):
        count("bytes", exercise(fuzz_file, mutant))

    check()
    assert COUNTS.get("bytes_refused", 0) + COUNTS.get("bytes_loaded", 0) >= 300
    print(f"\nfuzz (bytes): {COUNTS}")


def test_fuzz_mutated_structure(real, fuzz_file):
    BASE["data"] = real.read_bytes()
    BASE["header"], BASE["meta"], BASE["tensors"] = split(BASE["data"])
    BASE["paths"] = [p for p in json_paths(BASE["meta"]) if p]

    @FUZZ
    @given(structure_mutations())
    def check(mutant):
        count("structure", exercise(fuzz_file, mutant))

    check()
    refused, loaded = COUNTS.get("structure_refused", 0), COUNTS.get("structure_loaded", 0)
    assert refused + loaded >= 300 and refused > 0 and loaded > 0
    print(f"\nfuzz (structure): {COUNTS}")
