import pytest

from domret_pipeline.core.artifacts import ArtifactRef, atomic_artifact_dir


def test_artifact_appears_only_after_success(tmp_path):
    with atomic_artifact_dir(tmp_path, "thing") as pending:
        (pending.path / "a.txt").write_text("hello")
    ref = pending.ref
    assert ref.verify().joinpath("a.txt").read_text() == "hello"

    with pytest.raises(RuntimeError):
        with atomic_artifact_dir(tmp_path, "thing") as failing:
            (failing.path / "a.txt").write_text("half-written")
            raise RuntimeError("boom")
    # the failed write left nothing behind and the good artifact is intact
    assert [p.name for p in (tmp_path / "thing").iterdir()] == [ref.sha256[:16]]
    assert not any((tmp_path / ".staging").iterdir())
    ref.verify()


def test_identical_content_is_written_once(tmp_path):
    refs = []
    for _ in range(2):
        with atomic_artifact_dir(tmp_path, "x") as pending:
            (pending.path / "f").write_text("same")
        refs.append(pending.ref)
    assert refs[0] == refs[1]


def test_verify_detects_changed_or_missing_content(tmp_path):
    with atomic_artifact_dir(tmp_path, "x") as pending:
        (pending.path / "f").write_text("original")
    ref = pending.ref
    (tmp_path / "x" / ref.sha256[:16] / "f").write_text("tampered")
    with pytest.raises(ValueError, match="changed since it was written"):
        ref.verify()
    with pytest.raises(FileNotFoundError):
        ArtifactRef(str(tmp_path / "nowhere"), "0" * 64).verify()
    assert ArtifactRef.from_json(ref.to_json()) == ref
