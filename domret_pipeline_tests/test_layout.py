"""The code's layout: the core grouped by stage, importable without Dagster or torch, modules
kept short, and the README's layout section naming what is there."""

import re
import subprocess
import sys
from pathlib import Path

import domret_pipeline
import domret_pipeline.core

PACKAGE = Path(domret_pipeline.__file__).parent
CORE = Path(domret_pipeline.core.__file__).parent
ROOT = PACKAGE.parent


def test_the_whole_core_imports_without_dagster_or_the_heavy_libraries():
    code = ("import importlib, pkgutil, sys, domret_pipeline.core as core\n"
            "for m in pkgutil.walk_packages(core.__path__, 'domret_pipeline.core.'): importlib.import_module(m.name)\n"
            "print(sorted(k for k in ('dagster', 'mlflow', 'torch', 'sentence_transformers', 'faiss') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def test_every_core_folder_is_a_package():
    # a folder without __init__.py would be a namespace package that pkgutil walks past
    for folder in CORE.iterdir():
        if folder.is_dir() and folder.name != "__pycache__":
            assert (folder / "__init__.py").exists(), folder


def test_no_module_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def test_the_readme_layout_names_every_core_subpackage_and_module():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = text[text.index("## Layout"):]
    block = layout[:layout.index("```", layout.index("```") + 3)]
    for package in sorted(p for p in CORE.iterdir() if (p / "__init__.py").exists()):
        section = re.search(rf"^    {package.name}/(.*?)(?=^    \S|\Z)", block, re.M | re.S)
        assert section, f"the README's layout lacks core/{package.name}/"
        for module in sorted(package.glob("*.py")):
            if module.stem != "__init__":
                assert re.search(rf"\b{module.stem}\b", section.group(1)), f"the README's layout lacks core/{package.name}/{module.name}"
    for module in sorted(CORE.glob("*.py")):
        if module.stem != "__init__":
            assert f"{module.name}" in block, f"the README's layout lacks core/{module.name}"
