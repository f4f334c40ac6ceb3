"""What a person reads in the Dagster UI and the README: plots embedded in metadata, numbers
formatted so small values stay visible, a job description and a graph that match the code.
The whole graph's metadata is checked in test_pipeline (one materialization)."""

import base64
import json
import re
from pathlib import Path

import numpy as np

from domret_pipeline.assets.common import plot_metadata
from domret_pipeline.assets.training import model_card_markdown
from domret_pipeline.core.evaluation import diagnostics
from domret_pipeline.core.evaluation.report import format_number, markdown_table, to_html
from domret_pipeline.definitions import ASSETS, defs
from domret_pipeline.graph_doc import mermaid_graph, readme_graph

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
README = Path(__file__).resolve().parents[1] / "README.md"


def embedded_pngs(markdown: str) -> list[bytes]:
    """The PNG images a Markdown metadata value embeds as data URIs, decoded."""
    return [base64.b64decode(data) for data in re.findall(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)]


def assert_plot(metadata: dict, key: str) -> None:
    """``metadata[key]`` is Markdown carrying exactly one real PNG, not a file path."""
    value = metadata[key]
    assert type(value).__name__ == "MarkdownMetadataValue", f"{key} is {type(value).__name__}, not Markdown"
    images = embedded_pngs(value.value)
    assert len(images) == 1 and images[0].startswith(PNG_SIGNATURE), f"{key} embeds no PNG"


def assert_ui_metadata(events: dict, report: dict, markdown: str) -> None:
    """The Dagster metadata of a whole-graph run (test_pipeline materializes it once): plots
    embedded as images, settings as configured, figures at four decimals."""
    checkpoint = events["embedding_checkpoint"].metadata
    for key in ("loss_curve", "dev_curve"):
        assert_plot(checkpoint, key)
    assert "| learning rate | 0.001 |" in checkpoint["model_card"].value  # graph_helpers.run_config's 1e-3, as configured
    assert re.search(r"\| dev nDCG@10 base → tuned \| \d\.\d{4} → \d\.\d{4} \|", checkpoint["model_card"].value)
    for key in ("similarity_dense_base", "similarity_dense_tuned", "norms", "abstention_curve", "abstention_reliability"):
        assert_plot(events["evaluation_report"].metadata, key)
    tuned = report["systems"]["dense_tuned"]["metrics"]
    assert f"| dense_tuned | {format_number(tuned['ndcg@10'])} | {format_number(tuned['mrr@10'])} |" in markdown
    reranker = events["reranker_adapter"].metadata
    assert_plot(reranker, "dev_curve")
    card = json.loads((Path(reranker["artifact_path"].value) / "card.json").read_text())
    # a run too short to log a loss has no loss curve, rather than an empty plot
    assert ("loss_curve" in reranker) == bool(card["loss_history"])
    if card["loss_history"]:
        assert_plot(reranker, "loss_curve")
    assert_plot(events["hard_negatives"].metadata, "score_histogram")


def test_numbers_keep_small_values_visible():
    assert format_number(0.123456) == "0.1235"
    assert format_number(0.0) == "0.0000"
    assert format_number(2e-05) == "2e-05"
    assert format_number(1.5e-04) == "0.00015"  # four decimals would print 0.0001 or 0.0002
    assert format_number(-3e-06) == "-3e-06"
    assert markdown_table(["p"], [[3e-05], [0.5]]).splitlines()[2:] == ["| 3e-05 |", "| 0.5000 |"]


def test_model_card_shows_settings_as_configured():
    training = {"lora": False, "lora_r": 8, "lora_target_modules": ["query"], "loss": "mnrl", "epochs": 3,
                "learning_rate": 2e-05, "batch_size": 16, "warmup_ratio": 0.1, "max_seq_length": 256}
    card = {"training": training, "base_model": "minilm", "best_epoch": 2.0, "train_rows": 10,
            "trainable_parameters": 1000, "total_parameters": 1000, "dev_ndcg@10_base": 0.5, "dev_ndcg@10": 0.61234,
            "training_seconds": 12.3, "inputs": {"hard_negatives": "ab" * 32}}
    markdown = model_card_markdown(card)
    assert "| learning rate | 2e-05 |" in markdown and "| warmup ratio | 0.1 |" in markdown
    assert "0.0000" not in markdown and "0.5000 → 0.6123" in markdown


def test_plot_metadata_embeds_the_png_of_the_final_folder(tmp_path):
    staging, final = tmp_path / "staging", tmp_path / "final"
    staging.mkdir()
    curves = diagnostics.training_curves(staging, "Training loss", [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}],
                                         "dev nDCG@10", {"dev": ([0, 1], [0.4, 0.5])})
    assert set(curves) == {"loss_curve", "dev_curve"}
    staging.rename(final)  # as atomic_artifact_dir moves a finished artifact
    metadata = plot_metadata(final, curves)
    for key in ("loss_curve", "dev_curve"):
        assert_plot(metadata, key)
    assert embedded_pngs(metadata["loss_curve"].value)[0] == (final / "loss.png").read_bytes()
    # no loss history (the trainer logged none): no loss curve, rather than an empty plot
    assert set(diagnostics.training_curves(tmp_path, "Training loss", [], "dev", {"dev": ([0], [0.4])})) == {"dev_curve"}


def test_report_plots_title_the_norms_by_the_chunks_sampled(tmp_path, monkeypatch):
    titles = {}
    draw = diagnostics.histogram_plot

    def recording(path, title, series, xlabel):
        titles[Path(path).name] = (title, {k: len(v) for k, v in series.items()})
        return draw(path, title, series, xlabel)

    monkeypatch.setattr(diagnostics, "histogram_plot", recording)
    rng = np.random.default_rng(0)
    arrays = {name: {"positive": rng.random(5), "negative": rng.random(7), "norms": rng.random(211)}
              for name in ("dense_base", "dense_tuned")}
    curves = {"challenger": {"threshold": [0.1, 0.2, 0.3], "accuracy": [0.5, 0.7, 0.6],
                             "reliability": {"score": [0.2, 0.5], "answerable_share": [0.25, 0.75], "count": [4, 4]}}}
    plots = diagnostics.report_plots(tmp_path, arrays, curves, "test")
    assert {p.name for p in plots.values()} == {"similarity_dense_base.png", "similarity_dense_tuned.png",
                                                "abstention_curve.png", "abstention_reliability.png", "norms.png"}
    title, legend = titles["norms.png"]
    assert "211 sampled chunks" in title and set(legend.values()) == {211}
    page = to_html({"info": {"split": "test", "n_queries": 0, "n_documents": 0, "n_chunks": 0, "encoders": {}},
                    "systems": {}}, plots)
    assert page.count("data:image/png;base64,") == 5


def test_full_job_description_names_every_asset():
    job = defs.get_repository_def().get_job("domret_full")
    missing = [a.key.to_user_string() for a in ASSETS if a.key.to_user_string() not in job.description]
    assert not missing, f"domret_full's description does not name {missing}"


def test_readme_graph_is_the_asset_graph():
    generated = mermaid_graph(ASSETS)
    assert readme_graph(README.read_text(encoding="utf-8")) == generated, (
        "README's graph differs from the assets' dependencies: run `python -m domret_pipeline.graph_doc README.md`")
    # it holds the edges the hand-drawn graph had missed, and BM25's wait-only edge dashed
    for edge in ("labeled_queries --> champion_release", "corpus_chunks --> evaluation_report",
                 "labeled_queries -.-> bm25_index"):
        assert f"  {edge}\n" in generated
