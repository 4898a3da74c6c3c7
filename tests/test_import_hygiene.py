"""The engine stays free of UI code: importing any core module must not load textual or rich."""

import pkgutil
import subprocess
import sys

import core


def core_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(core.__path__, prefix="core."))


def test_core_modules_exist():
    assert "core.cli" in core_modules()


def test_core_imports_no_ui_library():
    modules = core_modules()
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core imported UI libraries: {out.stdout.strip()}"
