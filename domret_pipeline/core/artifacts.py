"""Content-addressed, atomically written artifacts.

Every asset writes its output into a fresh temporary folder, hashes it, and only then moves
it to ``<root>/<name>/<hash>``. A failed write therefore never touches an earlier artifact,
and a downstream step can verify that it reads exactly the bytes its upstream produced.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from .processes import identity

_CHUNK = 1 << 20
OWNER_SUFFIX = ".owner"  # <root>/.staging/<folder>.owner: the process writing <folder>


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def sha256_dir(path: Path) -> str:
    """Hash of a folder: relative paths and file contents, in a fixed order."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        digest.update(rel.encode("utf-8") + b"\0" + sha256_file(file).encode() + b"\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class ArtifactRef:
    """Where an artifact lives and the content hash it had when it was written."""

    path: str
    sha256: str

    def verify(self) -> Path:
        """Return the path after checking that its content still has the recorded hash."""
        path = Path(self.path)
        if not path.is_dir():
            raise FileNotFoundError(f"artifact {path} is missing (expected hash {self.sha256[:12]})")
        actual = sha256_dir(path)
        if actual != self.sha256:
            raise ValueError(
                f"artifact {path} changed since it was written: hash {actual[:12]}, "
                f"expected {self.sha256[:12]}"
            )
        return path

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ArtifactRef":
        return cls(**json.loads(text))


@contextmanager
def atomic_artifact_dir(root: str | os.PathLike, name: str) -> Iterator["_PendingArtifact"]:
    """Write an artifact folder atomically.

    Usage::

        with atomic_artifact_dir(root, "faiss_index") as pending:
            write_files(pending.path)
        ref = pending.ref

    The folder only appears under ``root/name/<hash>`` once the block exits without error.
    """
    root = Path(root)
    # ``name`` may have a sub-folder (a partition: ``base_chunk_embeddings/shard-003``); staging
    # stays flat, where the start-up sweep looks.
    staging = root / ".staging" / f"{name.replace('/', '--')}-{uuid.uuid4().hex}"
    # The owner file sits beside the folder (inside it would change the hash). It is written
    # first, so a process killed at any point leaves a folder whose owner can be checked: the
    # start-up sweep (recovery.py) removes staging folders whose process is gone.
    owner = staging.with_name(staging.name + OWNER_SUFFIX)
    owner.parent.mkdir(parents=True, exist_ok=True)
    owner.write_text(json.dumps(identity()), encoding="utf-8")
    staging.mkdir(parents=True)
    pending = _PendingArtifact(staging)
    try:
        yield pending
        digest = sha256_dir(staging)
        final = root / name / digest[:16]
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            # Identical content was written before: keep the existing copy.
            shutil.rmtree(staging)
        else:
            os.replace(staging, final)  # atomic on one file system
        pending.ref = ArtifactRef(path=str(final.resolve()), sha256=digest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        owner.unlink(missing_ok=True)


class _PendingArtifact:
    def __init__(self, path: Path):
        self.path = path
        self.ref: ArtifactRef | None = None


def write_json(path: Path, payload: object) -> None:
    Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True, default=str), encoding="utf-8")


def read_json(path: Path) -> object:
    return json.loads(Path(path).read_text(encoding="utf-8"))
