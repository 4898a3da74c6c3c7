"""The training form's fields: how each is typed, parsed and checked, and how they become `core.train` flags.

Each field is a TrainConfig setting, declared once in core.training.settings (its label, kind, choices,
range and help come from there), so the form refuses exactly what the command line would refuse; this
module only adds the form's own fields (a corpus file, a run name) and the checks that depend on this
machine (does the corpus file exist, is there a CUDA device).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.corpus.buckets import CROPPED_MODES
from core.options import OptionError, brief
from core.training.settings import DEFAULT_LR, FINE_TUNE, PRESETS, RESUME_OVERRIDABLE, TrainConfig

CORPORA = ("tang300", "quantangshi", "file")
DEVICES = ("auto", "cpu", "cuda")
FIRST_RUN_PRESET = "quick"

# On resume the checkpoint's configuration wins; the trainer honours these schedule settings given anew.
RESUMABLE = tuple(
    n for n in ("epochs", "patience", "eval_every", "save_every", "device") if n in RESUME_OVERRIDABLE
)


@dataclass(frozen=True)
class Field:
    name: str  # TrainConfig's field, or "corpus_file" / "run_name" (the form's own)
    label: str
    kind: str  # "int", "float", "choice", "text"
    choices: tuple[str, ...] = ()
    optional: bool = False  # blank means "the default" (shown as a placeholder)
    help: str = ""


def setting_field(name: str, choices: tuple[str, ...] = (), help: str = "") -> Field:
    """The form field of a TrainConfig setting, from its declaration."""
    spec = TrainConfig.specs()[name]
    choices = choices or tuple(map(str, spec.choices))
    kind = "choice" if choices else {int: "int", float: "float"}.get(spec.kind, "text")
    return Field(name, spec.label or name, kind, choices, spec.optional, help or spec.help)


FIELDS: tuple[Field, ...] = (
    setting_field("corpus", CORPORA, "tang300 (唐诗三百首, 320 poems), quantangshi (全唐诗), or a file"),
    Field(
        "corpus_file", "File", "text", help="a UTF-8 text file with one poem a line, or chinese-poetry JSON"
    ),
    *map(setting_field, ("seq_mode", "seq_len", "batch_size", "embed_size", "hidden_size", "num_layers")),
    *map(setting_field, ("dropout", "optimizer", "lr", "epochs", "patience", "eval_every", "save_every")),
    setting_field("device", DEVICES, "auto: CUDA when there is one, else the CPU"),
    Field(
        "run_name", "Run name", "text", optional=True, help="the run's folder; blank: date-corpus-optimizer"
    ),
    Field(
        "init_from",
        "Start from",
        "text",
        optional=True,
        help="a checkpoint (or run folder) to fine-tune: its weights and model shape, a fresh optimizer "
        "(core.train --init-from); blank: new weights",
    ),
)
FIELD_BY_NAME = {f.name: f for f in FIELDS}
# The fields a fine-tune takes from its checkpoint (shown, not editable): core.training.finetune.FIXED_MODEL
FINE_TUNE_FIXED = ("embed_size", "hidden_size", "num_layers")
CONFIG_FIELDS = tuple(f.name for f in FIELDS if f.name in TrainConfig.__dataclass_fields__)
RUN_NAME_OK = re.compile(r"^[\w.\-]+$")


def preset_values(name: str) -> dict[str, object]:
    """The form's values for a preset: TrainConfig's defaults overridden by the preset."""
    config = {**TrainConfig().to_dict(), **PRESETS[name]}
    values = {k: config[k] for k in CONFIG_FIELDS}
    corpus = str(config["corpus"])
    if corpus not in CORPORA[:2]:
        values["corpus"], values["corpus_file"] = "file", corpus
    else:
        values["corpus_file"] = ""
    values["run_name"] = ""
    return values


def fine_tune_values(train: dict, model: dict, path: Path) -> dict[str, object]:
    """The form's values to fine-tune the checkpoint at `path` (its `train` and `model` metadata): its
    settings with the fine-tuning schedule (core.training.settings.FINE_TUNE), its model shape, on tang300
    until the user names another corpus."""
    values = preset_values(FIRST_RUN_PRESET)
    values.update({k: v for k, v in {**train, **FINE_TUNE}.items() if k in CONFIG_FIELDS})
    values.update({k: model[k] for k in FINE_TUNE_FIXED if k in model})
    values["corpus"], values["corpus_file"] = "tang300", ""
    values["init_from"] = str(path)
    return values


def as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def lr_placeholder(optimizer: str) -> str:
    return f"{DEFAULT_LR.get(optimizer, 0):g}"


def parse(raw: dict[str, str]) -> tuple[dict[str, object], dict[str, str]]:
    """Text of each field -> (typed values, field -> problem); a setting's text is parsed and range-checked
    by its declaration (core.options.Spec.parse), the form's own fields are text."""
    values: dict[str, object] = {}
    problems: dict[str, str] = {}
    specs = TrainConfig.specs()
    for name, text in raw.items():
        spec = specs.get(name)
        if spec is None or (FIELD_BY_NAME[name].kind == "choice" and spec.kind is str):
            values[name] = text.strip()
        elif not text.strip() and not spec.optional:
            problems[name] = "required"
        else:
            try:
                values[name] = spec.parse(text)
            except OptionError as exc:
                problems[name] = brief(str(exc))
    return values, problems


def check(
    raw: dict[str, str],
    *,
    cuda_available: bool | Callable[[], bool],
    runs_root: Path | None = None,
    resume: bool = False,
) -> tuple[dict[str, object], dict[str, str]]:
    """Parse and check every field as the trainer would; returns (values, field -> one-line problem).

    `cuda_available` may be a function: it is then asked only when the device field says cuda."""
    values, problems = parse(raw)
    config = {k: v for k, v in values.items() if k in CONFIG_FIELDS and k not in problems}
    if values.get("corpus") == "file":
        config["corpus"] = str(values.get("corpus_file", ""))
    for name, message in TrainConfig.problems(config).items():
        if name in FIELD_BY_NAME and name not in problems:
            problems[name] = brief(message)
    if not resume and values.get("corpus") == "file":
        problems.update(_check_corpus_file(str(values.get("corpus_file", ""))))
    device = str(values.get("device", "auto"))
    if device.startswith("cuda") and "device" not in problems and not _ask(cuda_available):
        problems["device"] = "no CUDA device here (this torch build or machine has none)"
    if not resume and values.get("init_from"):
        problems.update(_check_init_from(str(values["init_from"])))
    name = str(values.get("run_name") or "")
    if name and not resume:
        if not RUN_NAME_OK.match(name) or name.startswith("."):
            problems["run_name"] = "letters, digits, - _ . only"
        elif runs_root is not None and (runs_root / name).exists():
            problems["run_name"] = "a run of that name exists"
    return values, problems


def _ask(answer: bool | Callable[[], bool]) -> bool:
    return answer() if callable(answer) else answer


def _check_corpus_file(path_text: str) -> dict[str, str]:
    if not path_text:
        return {"corpus_file": "type the path of a poem file"}
    path = Path(path_text).expanduser()
    if not path.exists():
        return {"corpus_file": "no such file"}
    if not path.is_file():
        return {"corpus_file": "that is a folder, not a file"}
    return {}


def _check_init_from(path_text: str) -> dict[str, str]:
    from core.errors import PoemError
    from core.runs.checkpoint import read_meta
    from core.runs.folder import resolve_checkpoint

    try:
        read_meta(resolve_checkpoint(Path(path_text).expanduser()))
    except (PoemError, OSError, ValueError) as exc:
        return {"init_from": brief(str(exc))}
    return {}


def train_options(
    values: dict[str, object], *, resume: bool = False, preset: str | None = None
) -> dict[str, object]:
    """The `core.train` options (TrainConfig field -> value) for a checked form. With `preset`, the run starts
    from that preset and the form's fields override it: the settings the form does not show (the learning
    rate schedule, precision, tied embeddings, <unk> training, …) stay the preset's, not TrainConfig's."""
    if resume:
        return {k: values[k] for k in RESUMABLE if k in values}
    init_from = str(values.get("init_from") or "")
    options = {"preset": preset} if preset and not init_from else {}
    options.update({k: values[k] for k in CONFIG_FIELDS if k in values})
    if init_from:  # the checkpoint fixes the model's shape: core.train takes it from there
        options["init_from"] = str(Path(init_from).expanduser().resolve())
        for name in FINE_TUNE_FIXED:
            options.pop(name, None)
    if values.get("corpus") == "file":
        options["corpus"] = str(Path(str(values["corpus_file"])).expanduser().resolve())
    if values.get("seq_mode") not in CROPPED_MODES:
        options.pop("seq_len", None)
    return options
