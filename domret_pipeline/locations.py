"""Where the project's stores live: one answer for the CLI, the Python API and ``Definitions``.

``DOMRET_HOME`` (default ``.domret``) holds the artifacts, the references of the latest run
(``refs/``), the local MLflow store, the feedback database and the audit trail. The resources' defaults, the
``local`` environment of ``definitions.py``, ``domret`` and ``api.py`` all resolve them here,
so moving the home or renaming the registered model is one change.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = ".domret"
# The MLflow registered model whose versions are serving bundles (the mlflow resource's
# ``registered_model`` default, and what the CLI and the API promote and load).
REGISTERED_MODEL = "domret_retrieval"


def home(explicit: str | Path | None = None) -> Path:
    """``explicit`` (a ``--home`` flag, an API argument), else ``$DOMRET_HOME``, else ``.domret``."""
    return Path(explicit or os.environ.get("DOMRET_HOME", DEFAULT_HOME))


def artifacts_root(home_dir: str | Path) -> str:
    return f"{home_dir}/artifacts"


def refs_dir(home_dir: str | Path) -> str:
    return f"{home_dir}/refs"


def local_tracking_uri(home_dir: str | Path) -> str:
    return f"sqlite:///{home_dir}/mlflow.db"


def mlflow_artifacts(home_dir: str | Path) -> str:
    return f"{home_dir}/mlflow-artifacts"


def local_feedback_url(home_dir: str | Path) -> str:
    return f"sqlite:///{home_dir}/feedback.db"


def local_audit_url(home_dir: str | Path) -> str:
    return f"sqlite:///{home_dir}/audit.db"


def tracking_uri(explicit_home: str | Path | None = None) -> str:
    """The tracking store the CLI and the API read: ``$MLFLOW_TRACKING_URI`` (a team's server),
    else the local store under the home."""
    return os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri(home(explicit_home))


def feedback_url(explicit_home: str | Path | None = None, explicit_url: str | None = None) -> str:
    """The feedback store the CLI writes: ``explicit_url`` (``--url``), else
    ``$DOMRET_FEEDBACK_URL``, else the SQLite file under the home."""
    return explicit_url or os.environ.get("DOMRET_FEEDBACK_URL") or local_feedback_url(home(explicit_home))


def audit_url(explicit_home: str | Path | None = None, explicit_url: str | None = None) -> str:
    """The audit store served requests are written to: ``explicit_url`` (``--url``), else
    ``$DOMRET_AUDIT_URL``, else the SQLite file beside the feedback store."""
    return explicit_url or os.environ.get("DOMRET_AUDIT_URL") or local_audit_url(home(explicit_home))
