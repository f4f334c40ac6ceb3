"""One module resolves where the stores live, for the CLI, the API and Definitions."""


def test_the_cli_the_api_and_definitions_resolve_the_same_stores(tmp_path, monkeypatch):
    from domret_pipeline import locations
    from domret_pipeline.assets.common import ARTIFACT_IO
    from domret_pipeline.definitions import resources_for
    from domret_pipeline.registry import MODEL_NAME

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DOMRET_FEEDBACK_URL", raising=False)
    monkeypatch.setenv("DOMRET_HOME", str(tmp_path / "home"))
    resources = resources_for("local")
    assert resources["mlflow"].tracking_uri == locations.tracking_uri() == f"sqlite:///{tmp_path}/home/mlflow.db"
    assert resources["feedback"].url == locations.feedback_url()
    assert resources[ARTIFACT_IO].base_dir == str(locations.home() / "refs")
    # the API's registry and the pipeline's mlflow resource name the same registered model
    assert resources["mlflow"].registered_model == MODEL_NAME
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert locations.tracking_uri() == "http://mlflow.example:5000"
