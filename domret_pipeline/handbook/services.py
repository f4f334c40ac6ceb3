"""Service pages of the handbook: the catalogue (service name -> codename), SLO targets and
exceptions (by service name), and deploy notes, runbooks and dependencies (by codename)."""

from __future__ import annotations

from .generate import Handbook
from .names import CODENAMES, SERVICES


def add(hb: Handbook) -> None:
    for name, team in SERVICES:
        code = CODENAMES[name]
        catalogue = hb.doc(f"catalogue-{name}", f"Service catalogue: {name}", [
            f"{name} is known internally by the codename {code}.",
            f"{code} is owned by the {team} team.",
            f"Its source lives in the {code.lower()} repository and it is built by the shared CI pipeline.",
            f"New engineers on the {team} team get read access to {code} on their first day.",
        ], "catalogue")
        if name in ("checkout-api", "hl7-ingest", "slot-booking", "fuel-card-sync", "invoice-renderer"):
            hb.ask(f"cat-{name}-1", [f"What is the internal codename of {name}?", f"{name} codename"], catalogue, 0, "catalogue")
    _slo(hb)
    _deploy(hb)
    _runbooks(hb)
    _dependencies(hb)


def _slo(hb: Handbook) -> None:
    for name, team in SERVICES:
        avail = hb.pick(["99.5", "99.9", "99.95", "99.99"])
        p99 = hb.pick([180, 250, 300, 400, 600, 800])
        window = hb.pick([28, 30])
        freeze = hb.pick([50, 75, 100])
        approver = hb.pick(["the VP of Engineering", "the SRE lead", "the head of the owning domain", "the change advisory board"])
        max_days = hb.pick([14, 30, 45, 60, 90])
        slo = hb.doc(f"slo-{name}-targets", f"{name} service level objectives", [
            f"The {name} service is owned by the {team} team.",
            f"Its availability objective is {avail}% of successful requests over a rolling {window}-day window.",
            f"The latency objective is that 99% of requests complete within {p99} milliseconds, measured at the load balancer.",
            "Synthetic probes from three regions count towards availability, but health-check traffic does not.",
            f"When more than {freeze}% of the error budget is spent, feature releases to {name} are frozen until the budget recovers.",
        ], "slo")
        code = CODENAMES[name]  # exception records are filed by the owning team, under the codename
        exc = hb.doc(f"slo-{name}-exceptions", f"{code} SLO policy exceptions", [
            f"An exception to the {code} SLO policy lets the {team} team miss an objective without triggering the release freeze.",
            f"Exceptions for {code} must be approved by {approver}.",
            f"An exception lasts at most {max_days} days and cannot be renewed more than once.",
            "Every exception is recorded in the reliability register together with the planned remediation.",
            f"Planned maintenance announced at least {hb.pick([3, 5, 7])} days ahead is excluded from the {code} error budget without an exception.",
        ], "slo")
        hb.ask(f"slo-{name}-1", [f"What availability target does {name} have?", f"availability SLO {name}",
                                 f"How available must the {name} service be?"], slo, 1, "slo")
        hb.ask(f"slo-{name}-2", [f"Who signs off an SLO exception for {name}?", f"approval needed for {name} slo policy exception",
                                 f"Which person can approve an exception to the {name} objectives?"], exc, 1, "slo")
        if name in ("checkout-api", "route-planner", "pricing-engine", "hl7-ingest"):
            hb.ask(f"slo-{name}-3", f"How long can an SLO exception for {name} last?", exc, 2, "slo")
        if name in ("ledger-sync", "customer-portal", "tariff-calculator"):
            hb.ask(f"slo-{name}-na", f"What service credit do customers get in their invoice when {name} misses its SLO?", slo, None, "slo")


def _deploy(hb: Handbook) -> None:
    for name, _team in SERVICES:
        code = CODENAMES[name]
        window = hb.pick(["Tuesday to Thursday, 09:00 to 15:00", "any weekday before 16:00", "Monday to Thursday, 10:00 to 17:00"])
        canary = hb.pick([1, 5, 10])
        bake = hb.pick([15, 30, 60])
        rollback = hb.pick(["one click in the deploy console", "re-running the previous pipeline", "a feature-flag switch"])
        deploy = hb.doc(f"deploy-{name}", f"Deploying {code}", [
            f"Production deploys of {code} are allowed {window}.",
            f"Every release of {code} starts as a canary on {canary}% of traffic.",
            f"The canary bakes for {bake} minutes and is promoted only if error rate and latency stay within the SLO.",
            f"Rolling back {code} is done with {rollback}.",
            "Database migrations must be backward compatible with the previous release.",
        ], "deploy")
        if name in ("checkout-api", "customer-portal", "driver-app-backend", "inventory-feed", "returns-intake",
                    "pricing-engine", "route-planner", "notification-service"):
            hb.ask(f"dep-{name}-1", [f"What share of traffic gets the {name} canary?", f"{name} canary percentage",
                                     f"How big is the first rollout step for {name}?"], deploy, 1, "deploy")
            hb.ask(f"dep-{name}-2", [f"How do I roll back a bad {name} release?", f"{name} rollback procedure"], deploy, 3, "deploy")
        if name in ("ledger-sync", "telematics-ingest", "invoice-renderer"):
            hb.ask(f"dep-{name}-na", f"Which chat channel announces {name} releases to customers?", deploy, None, "deploy")


def _runbooks(hb: Handbook) -> None:
    for name, team in SERVICES:
        code = CODENAMES[name]
        threshold = hb.pick([2, 5, 10])
        first = hb.pick(["check the last deploy in the deploy console", "look at the upstream dependency dashboard",
                         "compare the error rate per region"])
        disk = hb.pick([80, 85, 90])
        purge = hb.pick(["rotate and compress logs older than one day", "expand the volume by 20%", "purge the local cache directory"])
        errors = hb.doc(f"runbook-{name}-errors", f"Runbook: {code} high error rate", [
            f"The {code} high-error-rate alert fires when more than {threshold}% of requests fail for five minutes.",
            f"The first step is to {first}.",
            f"If a deploy in the last hour correlates with the errors, roll {code} back before debugging.",
            f"Escalate to the {team} secondary on-call if the error rate does not drop within 20 minutes.",
        ], "runbook")
        disk_doc = hb.doc(f"runbook-{name}-disk", f"Runbook: {code} disk usage", [
            f"The {code} disk alert fires at {disk}% usage on any node.",
            f"The safe first action is to {purge}.",
            "Never delete files under the data directory by hand.",
            "Open a capacity ticket if the alert fires twice in one week.",
        ], "runbook")
        if name in ("checkout-api", "ledger-sync", "warehouse-scanner-hub", "telematics-ingest", "slot-booking",
                    "fuel-card-sync", "customs-declarations", "label-printer-gateway"):
            hb.ask(f"rb-{name}-1", [f"{name} error rate alert, what do I check first?",
                                    f"First step when {name} starts failing requests",
                                    f"What should I look at first when {name} throws errors?"], errors, 1, "runbook")
            hb.ask(f"rb-{name}-2", [f"At what disk usage does {name} alert?", f"{name} disk full threshold"], disk_doc, 0, "runbook")
        if name in ("payroll-export", "customs-declarations", "dispatch-radio-bridge"):
            hb.ask(f"rb-{name}-na", f"Which Grafana dashboard panel shows {name} memory usage?", disk_doc, None, "runbook")


def _dependencies(hb: Handbook) -> None:
    for name, _team in SERVICES:
        code = CODENAMES[name]
        upstream = hb.rng.sample([CODENAMES[n] for n, _ in SERVICES if n != name], 2)
        store = hb.pick(["PostgreSQL", "Redis", "Kafka", "an S3 bucket", "Elasticsearch"])
        timeout = hb.pick([200, 500, 1000, 2000])
        deps = hb.doc(f"deps-{name}", f"Dependencies of {code}", [
            f"{code} calls {upstream[0]} and {upstream[1]} synchronously.",
            f"Its primary data store is {store}.",
            f"Calls from {code} to other services time out after {timeout} milliseconds and are retried once.",
            f"An outage of {upstream[0]} degrades {code} but must not take it down.",
        ], "dependencies")
        if name in ("checkout-api", "route-planner", "slot-booking", "returns-intake", "pricing-engine"):
            hb.ask(f"dep2-{name}-1", [f"What is the primary datastore of {name}?", f"which database does {name} use"],
                   deps, 1, "dependencies")
