"""What the ``domret`` commands share: the Dagster home, quiet libraries, progress lines, the
DOMRET_HOME folder, the asset selection of ``--select`` and the stamp a tool prints with its figures."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path


def ensure_dagster_home() -> None:
    if not os.environ.get("DAGSTER_HOME"):
        if not Path("dagster.yaml").is_file():
            sys.exit("domret: set DAGSTER_HOME, or run from the project root (where dagster.yaml is)")
        os.environ["DAGSTER_HOME"] = str(Path.cwd())


def domret_home(args: argparse.Namespace | None = None) -> Path:
    """``--home``, else ``$DOMRET_HOME``, else ``.domret`` (:func:`..locations.home`)."""
    from ..locations import home

    return home(getattr(args, "home", None))


def quiet() -> None:
    """Keep the terminal to the report: no beta notices, progress bars, weight-loading reports
    or deprecation chatter from the libraries (``--verbose`` keeps them)."""
    import logging
    import warnings

    import dagster

    warnings.filterwarnings("ignore", category=dagster.BetaWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    for name in ("sentence_transformers", "transformers", "peft", "bm25s"):
        logging.getLogger(name).setLevel(logging.ERROR)


def show_progress() -> None:
    """Print the long steps' progress lines (``domret.progress``) on the terminal while the
    rest of Dagster's event stream stays in the UI."""
    import logging

    logger = logging.getLogger("domret.progress")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def asset_selection(defs, spec: str):
    """``a,b+``: the assets a and b, and everything downstream of b. Upstream assets outside
    the selection are read from their latest materialized references."""
    import dagster as dg

    graph = defs.get_repository_def().asset_graph
    known = {k.to_user_string() for k in graph.get_all_asset_keys()}
    keys: set = set()
    for item in (part.strip() for part in spec.split(",") if part.strip()):
        name = item.rstrip("+")
        if name not in known:
            sys.exit(f"domret: unknown asset {name!r} in --select (known: {', '.join(sorted(known))})")
        selection = dg.AssetSelection.assets(name)
        if item.endswith("+"):
            selection = selection.downstream()
        keys |= set(selection.resolve(graph))
    return keys


def stamp(args: argparse.Namespace) -> dict:
    """When and how figures were made: printed with every tool's output, pasted into BENCHMARKS.md."""
    return {"date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "command": args.command_line}


def artifact_dir(refs: str | Path, name: str) -> Path:
    """The folder of asset ``name``'s latest published artifact, verified by hash."""
    from ..publication import latest_ref

    return Path(latest_ref(refs, name).path)


def labels_and_chunks(refs: str | Path):
    """The labeled queries and the chunks of a run's published references."""
    from ..core.data.labels import LabeledQueries
    from ..core.data.serialization import read_chunks

    return LabeledQueries.load(artifact_dir(refs, "labeled_queries")), read_chunks(artifact_dir(refs, "corpus_chunks") / "chunks.jsonl")


def offline() -> None:
    """No hub downloads unless the caller's environment allows them (HF_HUB_OFFLINE=0): a tool
    reads the models a run recorded, and a missing one should fail at once, not download."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
