"""Run-scoped references and their publication: a run is all or nothing.

A step writes its reference only under its run (``<refs>/runs/<run id>/<asset>.json``). What
everyone else reads (``domret search``, ``domret report``, the API, the feedback import, and the
upstream of a later ``--select`` run) are the *latest* references, ``<refs>/<asset>.json``.
Those move only when :func:`publish_run` publishes a run that ended successfully.

Layout (the latest references are symlinks, so the whole set switches with one rename)::

    <refs>/<asset>.json            -> current/<asset>.json       (created once, never rewritten)
    <refs>/current                 -> published/<publication id> (swapped with os.replace)
    <refs>/published/<id>/         one complete set of latest references + _publication.json
    <refs>/runs/<run id>/          what that run produced; _reads/ what it read from elsewhere

``os.replace`` of the ``current`` symlink is the commit point: a process killed at any instant
leaves ``current`` on the old complete set or on the new one, never a mix. Everything written
before it (the new ``published/<id>`` folder) is invisible until then.

A run's registry promotion (``champion_release`` registers a version; the ``champion`` alias
moves here) is recorded in the publication and applied right after the commit; a kill between
the commit and the alias move is completed by :func:`complete_publication` at the next start.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .core.artifacts import ArtifactRef

CURRENT, PUBLISHED, RUNS, READS = "current", "published", "runs", "_reads"
RECORD = "_publication.json"  # inside published/<id>/: who published it and what it promotes
PROMOTED = "_promoted"  # inside published/<id>/: the promotion it records was applied
OUTCOME = "_outcome.json"  # inside runs/<run id>/: published or refused, and why
KEEP_PUBLICATIONS = 20  # older publication folders are pruned (each is a few small JSON files)


@dataclass
class Outcome:
    run_id: str
    published: bool
    reason: str = ""
    assets: list[str] = field(default_factory=list)
    promoted_version: str | None = None

    def message(self) -> str:
        if not self.published:
            return f"run {self.run_id} was not published: {self.reason}"
        promoted = f"; champion is now v{self.promoted_version}" if self.promoted_version else ""
        return f"run {self.run_id} published {', '.join(self.assets) or 'nothing'}{promoted}"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # readers never see a half-written file


def run_dir(refs: str | Path, run_id: str) -> Path:
    return Path(refs, RUNS, run_id)


def key_file(key_path: list[str] | tuple[str, ...]) -> Path:
    return Path(*key_path).with_suffix(".json")


def write_run_ref(refs: str | Path, run_id: str, key_path, text: str) -> None:
    _write_atomic(run_dir(refs, run_id) / key_file(key_path), text)


def record_read(refs: str | Path, run_id: str, key_path, text: str, source: str) -> None:
    """Remember a reference this run read from outside itself, to check at publication that it
    is still what is published (``source``: ``published`` or ``run:<parent run id>``)."""
    payload = {**json.loads(text), "source": source}
    _write_atomic(run_dir(refs, run_id) / READS / key_file(key_path), json.dumps(payload))


def read_for_run(refs: str | Path, run_id: str, key_path, parent_run_id: str | None = None) -> str | None:
    """The reference a step of ``run_id`` reads: its own run's, else the parent run's (a
    re-execution), else the latest published one; None when there is none."""
    name = key_file(key_path)
    own = run_dir(refs, run_id) / name
    if own.is_file():
        return own.read_text(encoding="utf-8")
    if parent_run_id and parent_run_id != run_id and (run_dir(refs, parent_run_id) / name).is_file():
        text = (run_dir(refs, parent_run_id) / name).read_text(encoding="utf-8")
        record_read(refs, run_id, key_path, text, f"run:{parent_run_id}")
        return text
    latest = Path(refs) / name
    if latest.is_file():
        text = latest.read_text(encoding="utf-8")
        record_read(refs, run_id, key_path, text, "published")
        return text
    return None


def latest_ref(refs: str | Path, name: str) -> ArtifactRef:
    """The latest published reference of asset ``name``, re-hashed as the IO manager re-hashes
    a step's inputs: what every command outside a run (report, feedback queue, tuning,
    evaluation, benchmarks) reads, so none of them works on bytes that changed since."""
    path = Path(refs) / key_file([name])
    if not path.is_file():
        raise FileNotFoundError(f"{name} has not been published yet ({path} is missing): run `domret run` first")
    ref = ArtifactRef.from_json(path.read_text(encoding="utf-8"))
    ref.verify()
    return ref


def _ref_files(folder: Path) -> dict[str, str]:
    """``{relative path: text}`` of the reference files in a folder (bookkeeping files start with _)."""
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(folder.rglob("*.json")) if not any(part.startswith("_") for part in p.relative_to(folder).parts)}


def published_refs(refs: str | Path) -> dict[str, str]:
    """The current complete set of latest references (``{"corpus_chunks.json": text}``)."""
    return _ref_files(Path(refs) / CURRENT)


def _link(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.{os.getpid()}.lnk")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _ensure_asset_links(refs: Path, names) -> None:
    for name in names:
        link = refs / name
        target = os.path.relpath(refs / CURRENT / name, link.parent)
        if not (link.is_symlink() and os.readlink(link) == target):
            link.parent.mkdir(parents=True, exist_ok=True)
            _link(link, target)


def ensure_layout(refs: str | Path) -> None:
    """Create the layout; references written before run-scoped publication (plain files) become
    the first publication, byte for byte, and then links to it."""
    refs = Path(refs)
    refs.mkdir(parents=True, exist_ok=True)
    if (refs / CURRENT).is_symlink():
        return
    legacy = {p.relative_to(refs).as_posix(): p.read_text(encoding="utf-8") for p in sorted(refs.rglob("*.json"))
              if not p.is_symlink() and p.relative_to(refs).parts[0] not in (RUNS, PUBLISHED, CURRENT)
              and not p.name.startswith(("_", "."))}
    folder = _write_publication(refs, legacy, {"run_id": None, "note": "references from before run-scoped publication"})
    _link(refs / CURRENT, os.path.relpath(folder, refs))
    _ensure_asset_links(refs, legacy)


def _write_publication(refs: Path, files: dict[str, str], record: dict) -> Path:
    pub_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{(record.get('run_id') or 'legacy')[:8]}-{os.urandom(3).hex()}"
    tmp = refs / PUBLISHED / f".{pub_id}.tmp"
    for name, text in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text, encoding="utf-8")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / RECORD).write_text(json.dumps({**record, "published_at": time.time(), "files": sorted(files)}, indent=2))
    final = refs / PUBLISHED / pub_id
    os.replace(tmp, final)  # a complete folder or none; not visible to readers until `current` points at it
    return final


@contextmanager
def _locked(refs: Path) -> Iterator[None]:
    """One publisher at a time (the CLI and the daemon's sensor may both try the same run)."""
    refs.mkdir(parents=True, exist_ok=True)
    with open(refs / ".publication.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _current_record(refs: Path) -> tuple[Path, dict]:
    folder = (refs / CURRENT).resolve()
    return folder, json.loads((folder / RECORD).read_text(encoding="utf-8"))


def complete_publication(refs: str | Path, registry=None) -> str | None:
    """Apply the registry promotion recorded by the current publication if a kill interrupted it
    (idempotent: promoting the champion again changes nothing). Returns the version promoted."""
    if not (Path(refs) / CURRENT).is_symlink():
        return None
    with _locked(Path(refs)):
        return _complete_promotion(Path(refs), registry)


def _complete_promotion(refs: Path, registry) -> str | None:
    if not (refs / CURRENT).is_symlink():
        return None
    folder, record = _current_record(refs)
    promote = record.get("promote")
    if not promote or (folder / PROMOTED).exists() or registry is None:
        return None
    registry.promote(promote)
    registry.client.set_model_version_tag(registry.name, promote, "domret.release_state", "published")
    (folder / PROMOTED).write_text(promote)
    return promote


def _outcome(refs: Path, outcome: Outcome) -> Outcome:
    _write_atomic(run_dir(refs, outcome.run_id) / OUTCOME, json.dumps(outcome.__dict__))
    return outcome


def previous_outcome(refs: str | Path, run_id: str) -> Outcome | None:
    path = run_dir(refs, run_id) / OUTCOME
    return Outcome(**json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None


def _reads(refs: Path, run_id: str, depth: int = 0) -> tuple[dict[str, str], list[str]]:
    """What a run read from outside itself: references of parent runs to carry into the
    publication, and the problems (a read published reference that changed since)."""
    current = {name: json.loads(text)["sha256"] for name, text in published_refs(refs).items()}
    carry, problems = {}, []
    for name, text in _ref_files(run_dir(refs, run_id) / READS).items():
        read = json.loads(text)
        source = read.pop("source")
        if source == "published":
            if current.get(name) != read["sha256"]:
                now = current.get(name, "nothing")[:12]
                problems.append(f"{name[:-5]} was {read['sha256'][:12]} when this run read it, and is now {now} "
                                f"(another run published since)")
        elif depth < 10:  # a re-execution: the parent run's outputs are part of this run's result
            parent = source.split(":", 1)[1]
            carry[name] = json.dumps(read)
            parent_carry, parent_problems = _reads(refs, parent, depth + 1)
            carry = {**parent_carry, **carry}
            problems += parent_problems
    return carry, problems


def _promotion(produced: dict[str, str], registry) -> tuple[str | None, str | None]:
    """The registry version to promote (from champion_release's release.json) or a reason to refuse."""
    text = produced.get("champion_release.json")
    if text is None:
        return None, None
    release = json.loads((Path(json.loads(text)["path"]) / "release.json").read_text(encoding="utf-8"))
    version = release.get("registered_version")
    if version is None:  # the bundle was already the champion: nothing moves
        return None, None
    if registry is None:
        return None, "this run registered a release but no registry was given to promote it in"
    champion = registry.champion()
    now = champion.version if champion else None
    if now != release.get("gated_against_version"):
        return None, (f"the release gate compared this challenger with champion v{release.get('gated_against_version')}, "
                      f"but the champion is now v{now}: re-run evaluation_report+")
    return str(version), None


def publish_run(refs: str | Path, run_id: str, registry=None) -> Outcome:
    """Publish a successful run's references (and its champion promotion) as one step.

    Idempotent: a run already published or refused gets its earlier outcome back. Refused,
    with the reason, when a reference the run read from the latest set changed since (another
    run published in between), or when the champion moved since its release gate."""
    refs = Path(refs)
    with _locked(refs):
        ensure_layout(refs)
        _complete_promotion(refs, registry)
        earlier = previous_outcome(refs, run_id)
        if earlier is not None:
            return earlier
        produced = _ref_files(run_dir(refs, run_id))
        if not produced:
            return Outcome(run_id, False, "the run produced no reference")
        carry, problems = _reads(refs, run_id)
        version, refusal = _promotion(produced, registry)
        if problems or refusal:
            if registry is not None and version is None and "champion_release.json" in produced:
                _mark_release(registry, produced, "refused")
            return _outcome(refs, Outcome(run_id, False, "; ".join([*problems, *([refusal] if refusal else [])])))
        files = {**published_refs(refs), **carry, **produced}
        folder = _write_publication(refs, files, {"run_id": run_id, "produced": sorted(produced),
                                                  "carried_from_parent_runs": sorted(carry), "promote": version})
        _ensure_asset_links(refs, files)
        _link(refs / CURRENT, os.path.relpath(folder, refs))  # the commit point
        _complete_promotion(refs, registry)
        _prune(refs)
        names = sorted(n[:-5] for n in {**carry, **produced})
        return _outcome(refs, Outcome(run_id, True, assets=names, promoted_version=version))


def _mark_release(registry, produced: dict[str, str], state: str) -> None:
    release = json.loads((Path(json.loads(produced["champion_release.json"])["path"]) / "release.json").read_text())
    if release.get("registered_version"):
        registry.client.set_model_version_tag(registry.name, str(release["registered_version"]),
                                              "domret.release_state", state)


def _prune(refs: Path) -> None:
    current = (refs / CURRENT).resolve()
    folders = sorted((p for p in (refs / PUBLISHED).iterdir() if p.is_dir() and p.resolve() != current),
                     key=lambda p: p.stat().st_mtime)
    for old in folders[:-KEEP_PUBLICATIONS]:
        shutil.rmtree(old, ignore_errors=True)
