"""The bundled sample is built to show what the product fixes (README, "The bundled sample"):
these tests pin the properties that make it so, not only its bytes (test_cli_tools)."""

from collections import Counter

from domret_pipeline.core.data.splits import split_of
from domret_pipeline.handbook.generate import build
from domret_pipeline.handbook.names import CODENAMES, SITE_CODES


def test_codename_pages_never_name_their_service_and_only_the_catalogue_links_them():
    docs, queries, qrels, _ = build()
    by_id = {d["_id"]: d for d in docs}
    for name, code in CODENAMES.items():
        for doc_id in (f"runbook-{name}-errors", f"runbook-{name}-disk", f"deploy-{name}", f"deps-{name}",
                       f"slo-{name}-exceptions"):
            page = by_id[doc_id]["title"] + " " + by_id[doc_id]["text"]
            assert code in page and name not in page, doc_id
        linking = [d["_id"] for d in docs if name in d["text"] and code in d["text"]]
        assert linking == [f"catalogue-{name}"]
    asked = {q["_id"]: q["text"] for q in queries}
    relevant = {qid: did for qid, did, _ in qrels}
    # people ask by service name: no query about a codename page uses the codename
    for qid, did in relevant.items():
        if did.startswith(("runbook-", "deploy-", "deps-")):
            assert not any(code in asked[qid] for code in CODENAMES.values()), qid


def test_safety_notices_use_site_codes_and_the_directory_links_them_to_cities():
    docs, *_ = build()
    for site, code in SITE_CODES.items():
        for d in docs:
            if d["_id"].startswith(f"forklift-{site.lower()}-"):
                assert code in d["title"] and site not in d["text"] + d["title"]
        assert [d["_id"] for d in docs if site in d["text"] and code in d["text"]] == [f"site-{site.lower()}"]


def test_every_split_has_abstention_cases_to_calibrate_and_measure_on():
    docs, queries, qrels, evidence = build()
    with_evidence = {e["query_id"] for e in evidence}
    unanswerable = Counter(split_of(q["_id"]) for q in queries if q["_id"] not in with_evidence)
    assert set(unanswerable) == {"train", "dev", "test"} and min(unanswerable.values()) >= 4
    assert len({qid for qid, _, _ in qrels}) == len(queries)  # every query, answerable or not, has its on-topic passage
