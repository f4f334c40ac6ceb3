"""The bundled sample data set: an engineering handbook of a fictional logistics company.

Deterministic (fixed seed): re-running it reproduces the committed files byte for byte.
Passages about different services, sites and interfaces share their wording on purpose, so
a retriever has to match the entity *and* the constraint: on-topic but wrong passages are the
failure the pipeline exists to fix. Some questions ask for facts their on-topic passage does
not state: they have a relevant document but no evidence sentence, and the right end-to-end
behaviour for them is to abstain (as SciFact's claims without evidence).

    domret sample domret_pipeline/sample_data/handbook
"""

from __future__ import annotations

import random

from .names import SEGMENTS, SERVICES, SITES, TEAMS

SEED = 20261127
rng = random.Random(SEED)


def sentences_doc(doc_id: str, title: str, sentences: list[str], topic: str) -> dict:
    return {"_id": doc_id, "title": title, "text": " ".join(sentences), "sentences": sentences, "topic": topic}


def build():
    rng.seed(SEED)  # the same files on every call, not only the first in a process
    docs, queries, evidence, qrels = [], [], [], []

    def ask(qid: str, text: str, doc: dict, sentence: int | None, slice_: str) -> None:
        queries.append({"_id": qid, "text": text, "slice": slice_})
        qrels.append((qid, doc["_id"], 1))
        if sentence is not None:
            evidence.append({"query_id": qid, "doc_id": doc["_id"], "label": "SUPPORT", "sentences": [sentence]})

    # ---------------------------------------------------------------- SLO policy
    for name, team in SERVICES:
        avail = rng.choice(["99.5", "99.9", "99.95", "99.99"])
        p99 = rng.choice([180, 250, 300, 400, 600, 800])
        window = rng.choice([28, 30])
        budget_freeze = rng.choice([50, 75, 100])
        approver = rng.choice(["the VP of Engineering", "the SRE lead", "the head of the owning domain", "the change advisory board"])
        max_days = rng.choice([14, 30, 45, 60, 90])
        slo = sentences_doc(
            f"slo-{name}-targets", f"{name} service level objectives",
            [
                f"The {name} service is owned by the {team} team.",
                f"Its availability objective is {avail}% of successful requests over a rolling {window}-day window.",
                f"The latency objective is that 99% of requests complete within {p99} milliseconds, measured at the load balancer.",
                "Synthetic probes from three regions count towards availability, but health-check traffic does not.",
                f"When more than {budget_freeze}% of the error budget is spent, feature releases to {name} are frozen until the budget recovers.",
            ], "slo")
        exc = sentences_doc(
            f"slo-{name}-exceptions", f"{name} SLO policy exceptions",
            [
                f"An exception to the {name} SLO policy lets the {team} team miss an objective without triggering the release freeze.",
                f"Exceptions for {name} must be approved by {approver}.",
                f"An exception lasts at most {max_days} days and cannot be renewed more than once.",
                "Every exception is recorded in the reliability register together with the planned remediation.",
                f"Planned maintenance announced at least {rng.choice([3, 5, 7])} days ahead is excluded from the {name} error budget without an exception.",
            ], "slo")
        docs += [slo, exc]
        ask(f"slo-{name}-1", rng.choice([
            f"What availability target does {name} have?",
            f"availability SLO {name}",
            f"How available must the {name} service be?"]), slo, 1, "slo")
        ask(f"slo-{name}-2", rng.choice([
            f"Who signs off an SLO exception for {name}?",
            f"approval needed for {name} slo policy exception",
            f"Which person can approve an exception to the {name} objectives?"]), exc, 1, "slo")
        if name in ("checkout-api", "route-planner", "pricing-engine", "hl7-ingest"):
            ask(f"slo-{name}-3", f"How long can an SLO exception for {name} last?", exc, 2, "slo")
        if name in ("ledger-sync", "customer-portal"):
            # The passage is on topic but says nothing about this: abstain.
            ask(f"slo-{name}-na", f"What is the monthly cost credit paid to customers when {name} misses its SLO?", slo, None, "slo")

    # ---------------------------------------------------------------- forklift safety
    for site in SITES:
        aisle = rng.choice([5, 6, 8, 10])
        dock = rng.choice([3, 4, 5])
        cert = rng.choice([12, 24, 36])
        charge = rng.choice(["Bay C", "the north annex", "Zone 4", "the mezzanine floor", "Dock 1"])
        checklist = rng.choice([8, 10, 12, 14])
        horn = rng.choice(["at every aisle intersection", "before reversing and at blind corners", "when entering a pedestrian crossing"])
        speed = sentences_doc(
            f"forklift-{site.lower()}-speed", f"Forklift speed limits at the {site} warehouse",
            [
                f"At the {site} warehouse, forklifts may travel at most {aisle} km/h in storage aisles.",
                f"On loading docks the limit is {dock} km/h, and trucks must give way to pedestrians at all times.",
                f"Operators sound the horn {horn}.",
                "Speed limiters are checked by maintenance every quarter.",
            ], "forklift")
        ops = sentences_doc(
            f"forklift-{site.lower()}-operations", f"Forklift operation and charging at {site}",
            [
                f"Lead-acid batteries at {site} are charged only in {charge}, which has forced ventilation.",
                f"Before each shift the operator completes a {checklist}-point inspection checklist in the warehouse app.",
                f"A truck that fails any checklist item is tagged out and reported to the {site} shift supervisor.",
                f"Operator certification at {site} is valid for {cert} months and is renewed with a practical assessment.",
                "Passengers are never carried on forks or pallets.",
            ], "forklift")
        docs += [speed, ops]
        ask(f"fl-{site.lower()}-1", rng.choice([
            f"What is the forklift speed limit in the aisles at {site}?",
            f"{site} forklift max speed storage aisle",
            f"How fast may a forklift drive between racks in the {site} warehouse?"]), speed, 0, "forklift")
        ask(f"fl-{site.lower()}-2", rng.choice([
            f"Where are forklift batteries charged at {site}?",
            f"{site} battery charging location lead-acid",
            f"In which area of the {site} site do we charge truck batteries?"]), ops, 0, "forklift")
        ask(f"fl-{site.lower()}-3", rng.choice([
            f"How long is a forklift operator certificate valid at {site}?",
            f"{site} operator certification validity months"]), ops, 3, "forklift")
        if site in ("Leeds", "Nagoya"):
            ask(f"fl-{site.lower()}-na", f"What is the maximum lift height for forklifts at {site}?", speed, None, "forklift")

    # ---------------------------------------------------------------- HL7 mapping
    for seg, seg_name, field, field_name, concept in SEGMENTS:
        vocab = rng.choice(["UMLS CUI", "SNOMED CT", "LOINC", "local code table LCT-7"])
        fallback = rng.choice(["rejected with an AE acknowledgement", "routed to the terminology work queue", "passed through unmapped and flagged"])
        version = rng.choice(["2.5.1", "2.3", "2.6"])
        mapping = sentences_doc(
            f"hl7-{seg.lower()}-mapping", f"HL7 {seg} ({seg_name}) mapping",
            [
                f"The hl7-ingest interface accepts {seg} segments in HL7 version {version} messages.",
                f"Field {field} ({field_name}) carries the {concept}.",
                f"The interface maps {field} to a {vocab} concept before it is stored.",
                f"A value of {field} that has no mapping is {fallback}.",
                f"Repeating values in {field} are mapped one by one and kept in their original order.",
            ], "hl7")
        docs.append(mapping)
        ask(f"hl7-{seg.lower()}-1", rng.choice([
            f"What terminology is {field} mapped to?",
            f"CUI mapping for {seg} {field_name}",
            f"In HL7 {seg}, which code system does the {field_name} end up in?"]), mapping, 2, "hl7")
        ask(f"hl7-{seg.lower()}-2", rng.choice([
            f"What happens when {field} cannot be mapped?",
            f"unmapped {field} value handling",
            f"How does hl7-ingest treat a {seg} {field_name} with no mapping?"]), mapping, 3, "hl7")
        if seg in ("OBX", "PID"):
            ask(f"hl7-{seg.lower()}-na", f"Which FHIR resource does the {seg} segment become?", mapping, None, "hl7")

    # ---------------------------------------------------------------- on-call and incidents
    for team in TEAMS:
        page = rng.choice([5, 10, 15])
        handoff = rng.choice(["Monday 09:00", "Wednesday 10:00", "Friday 16:00"])
        postmortem = rng.choice([3, 5, 7, 10])
        sev = rng.choice(["SEV1", "SEV2"])
        slug = team.replace(" ", "-")
        oncall = sentences_doc(
            f"oncall-{slug}", f"On-call rotation of the {team} team",
            [
                f"The {team} team runs a weekly primary and secondary on-call rotation.",
                f"The rotation hands off every {handoff} local time.",
                f"The primary must acknowledge a page within {page} minutes, or it escalates to the secondary.",
                f"A written postmortem is due within {postmortem} working days for every {sev} or worse incident owned by {team}.",
                "On-call engineers receive a fixed stipend per week on rotation.",
            ], "oncall")
        docs.append(oncall)
        ask(f"oc-{slug}-1", rng.choice([
            f"How quickly must {team} on-call acknowledge a page?",
            f"{team} page acknowledgement time",
            f"What is the ack deadline for the {team} primary on-call?"]), oncall, 2, "oncall")
        if team in ("payments", "fleet", "security", "data platform", "mobile"):
            ask(f"oc-{slug}-2", f"When is the postmortem due for a {team} incident?", oncall, 3, "oncall")
        if team in ("web", "commercial"):
            ask(f"oc-{slug}-na", f"How much is the weekly on-call stipend for the {team} team?", oncall, None, "oncall")

    # ---------------------------------------------------------------- data retention
    DATA = [("driver GPS traces", 90), ("customer support call recordings", 180), ("payment card tokens", 400),
            ("warehouse CCTV footage", 30), ("HL7 message archives", 2555), ("application debug logs", 14),
            ("delivery proof-of-signature images", 730), ("recruiting candidate files", 365)]
    for data, days in DATA:
        slug = data.split()[0].lower() + "-" + data.split()[1].lower()
        legal = rng.choice(["the legal hold register", "the privacy office", "the records manager"])
        store = rng.choice(["the EU data lake", "cold object storage in Frankfurt", "the on-premise archive"])
        retention = sentences_doc(
            f"retention-{slug}", f"Retention of {data}",
            [
                f"{data[0].upper() + data[1:]} are kept for {days} days after collection.",
                f"They are stored in {store} and encrypted at rest.",
                f"Deletion runs nightly; items under a legal hold are skipped until {legal} releases them.",
                "Access requires a ticket that names the business purpose.",
            ], "retention")
        docs.append(retention)
        ask(f"ret-{slug}-1", rng.choice([
            f"How long do we keep {data}?",
            f"retention period {data}",
            f"After how many days are {data} deleted?"]), retention, 0, "retention")
        if data in ("warehouse CCTV footage",):
            ask(f"ret-{slug}-na", f"Who may view {data} in real time?", retention, None, "retention")

    # ---------------------------------------------------------------- deployment and change management
    for name, team in SERVICES:
        window = rng.choice(["Tuesday to Thursday, 09:00 to 15:00", "any weekday before 16:00", "Monday to Thursday, 10:00 to 17:00"])
        canary = rng.choice([1, 5, 10])
        bake = rng.choice([15, 30, 60])
        rollback = rng.choice(["one click in the deploy console", "re-running the previous pipeline", "a feature-flag switch"])
        deploy = sentences_doc(
            f"deploy-{name}", f"Deploying {name}",
            [
                f"Production deploys of {name} are allowed {window}.",
                f"Every release of {name} starts as a canary on {canary}% of traffic.",
                f"The canary bakes for {bake} minutes and is promoted only if error rate and latency stay within the SLO.",
                f"Rolling back {name} is done with {rollback}.",
                "Database migrations must be backward compatible with the previous release.",
            ], "deploy")
        docs.append(deploy)
        if name in ("checkout-api", "customer-portal", "driver-app-backend", "inventory-feed", "returns-intake", "pricing-engine"):
            ask(f"dep-{name}-1", rng.choice([
                f"What share of traffic gets the {name} canary?",
                f"{name} canary percentage",
                f"How big is the first rollout step for {name}?"]), deploy, 1, "deploy")
            ask(f"dep-{name}-2", f"How do I roll back a bad {name} release?", deploy, 3, "deploy")

    # ---------------------------------------------------------------- runbooks
    for name, team in SERVICES:
        threshold = rng.choice([2, 5, 10])
        first = rng.choice(["check the last deploy in the deploy console", "look at the upstream dependency dashboard",
                            "compare the error rate per region"])
        disk = rng.choice([80, 85, 90])
        purge = rng.choice(["rotate and compress logs older than one day", "expand the volume by 20%", "purge the local cache directory"])
        errors = sentences_doc(
            f"runbook-{name}-errors", f"Runbook: {name} high error rate",
            [
                f"The {name} high-error-rate alert fires when more than {threshold}% of requests fail for five minutes.",
                f"The first step is to {first}.",
                f"If a deploy in the last hour correlates with the errors, roll {name} back before debugging.",
                f"Escalate to the {team} secondary on-call if the error rate does not drop within 20 minutes.",
            ], "runbook")
        disk_doc = sentences_doc(
            f"runbook-{name}-disk", f"Runbook: {name} disk usage",
            [
                f"The {name} disk alert fires at {disk}% usage on any node.",
                f"The safe first action is to {purge}.",
                "Never delete files under the data directory by hand.",
                "Open a capacity ticket if the alert fires twice in one week.",
            ], "runbook")
        docs += [errors, disk_doc]
        if name in ("checkout-api", "ledger-sync", "warehouse-scanner-hub", "telematics-ingest", "slot-booking", "fuel-card-sync"):
            ask(f"rb-{name}-1", rng.choice([
                f"{name} error rate alert, what do I check first?",
                f"First step when {name} starts failing requests",
                f"When does the {name} high error alert fire?"]), errors, 1 if "first" in first else 1, "runbook")
            ask(f"rb-{name}-2", rng.choice([
                f"At what disk usage does {name} alert?",
                f"{name} disk full threshold"]), disk_doc, 0, "runbook")
        if name in ("payroll-export", "customs-declarations"):
            ask(f"rb-{name}-na", f"Which Grafana dashboard shows {name} disk usage?", disk_doc, None, "runbook")

    # ---------------------------------------------------------------- site emergencies
    for site in SITES:
        muster = rng.choice(["car park B", "the visitor entrance", "the east fence gate", "the truck marshalling yard"])
        drill = rng.choice(["every three months", "twice a year", "every month"])
        aid = rng.choice([2, 3, 4])
        emergency = sentences_doc(
            f"emergency-{site.lower()}", f"Emergency procedures at {site}",
            [
                f"On a fire alarm, everyone at the {site} warehouse leaves by the nearest exit and gathers at {muster}.",
                f"Evacuation drills at {site} run {drill}.",
                f"Each shift at {site} has at least {aid} trained first aiders on the floor.",
                "Forklifts are parked with forks lowered and keys removed before leaving.",
            ], "emergency")
        docs.append(emergency)
        if site in ("Rotterdam", "Memphis", "Porto", "Durban", "Calgary", "Lyon"):
            ask(f"em-{site.lower()}-1", rng.choice([
                f"Where is the muster point at {site}?",
                f"{site} fire alarm assembly point",
                f"Where do we gather after evacuating the {site} warehouse?"]), emergency, 0, "emergency")
        if site in ("Tilburg", "Gdansk"):
            ask(f"em-{site.lower()}-na", f"Who is the fire warden at {site}?", emergency, None, "emergency")

    # ---------------------------------------------------------------- HL7 ADT trigger events
    ADT = [("A01", "admit"), ("A02", "transfer"), ("A03", "discharge"), ("A04", "register an outpatient"),
           ("A05", "pre-admit"), ("A08", "update patient information"), ("A11", "cancel an admit"), ("A40", "merge patient records")]
    for code, action in ADT:
        route = rng.choice(["the bed-management feed", "the billing queue", "the master patient index", "the clinical data store"])
        retry = rng.choice([3, 5, 10])
        adt = sentences_doc(
            f"hl7-adt-{code.lower()}", f"HL7 ADT^{code} ({action}) handling",
            [
                f"An ADT^{code} message tells hl7-ingest to {action}.",
                f"hl7-ingest forwards every ADT^{code} to {route} after validation.",
                f"If the downstream system is unavailable, ADT^{code} delivery is retried {retry} times before alerting.",
                "Messages are processed in the order of MSH-7, the message timestamp.",
            ], "hl7")
        docs.append(adt)
        if code in ("A01", "A08", "A40"):
            ask(f"adt-{code.lower()}-1", rng.choice([
                f"Where does hl7-ingest send ADT^{code} messages?",
                f"routing of ADT {code} ({action}) events"]), adt, 1, "hl7")
        if code == "A11":
            ask(f"adt-{code.lower()}-na", f"Which clinician must sign an ADT^{code} cancellation?", adt, None, "hl7")

    # ---------------------------------------------------------------- vendor escalation
    for team in TEAMS:
        vendor = rng.choice(["Acme Cloud", "Northwind Telecom", "Fabrikam Hosting", "Contoso Payments", "Tailspin Logistics"])
        response = rng.choice([15, 30, 60, 120])
        slug = team.replace(" ", "-")
        escalation = sentences_doc(
            f"vendor-{slug}", f"Vendor escalation for the {team} team",
            [
                f"The main external supplier of the {team} team is {vendor}.",
                f"A priority-one ticket with {vendor} must be acknowledged by the vendor within {response} minutes under the contract.",
                f"Escalations to {vendor} are raised by the {team} on-call engineer, never by customers directly.",
                "Vendor performance is reviewed every quarter with procurement.",
            ], "vendor")
        docs.append(escalation)
        if team in ("payments", "security", "clinical integrations"):
            ask(f"ven-{slug}-1", rng.choice([
                f"How fast must the {team} team's vendor respond to a P1 ticket?",
                f"{team} supplier P1 response time"]), escalation, 1, "vendor")

    # ---------------------------------------------------------------- service dependencies
    for name, team in SERVICES:
        upstream = rng.sample([n for n, _ in SERVICES if n != name], 2)
        store = rng.choice(["PostgreSQL", "Redis", "Kafka", "an S3 bucket", "Elasticsearch"])
        timeout = rng.choice([200, 500, 1000, 2000])
        deps = sentences_doc(
            f"deps-{name}", f"Dependencies of {name}",
            [
                f"{name} calls {upstream[0]} and {upstream[1]} synchronously.",
                f"Its primary data store is {store}.",
                f"Calls from {name} to other services time out after {timeout} milliseconds and are retried once.",
                f"An outage of {upstream[0]} degrades {name} but must not take it down.",
            ], "dependencies")
        docs.append(deps)
        if name in ("checkout-api", "route-planner", "slot-booking"):
            ask(f"dep2-{name}-1", rng.choice([
                f"What is the primary datastore of {name}?",
                f"which database does {name} use"]), deps, 1, "dependencies")

    # ---------------------------------------------------------------- general policies (no per-entity twin)
    general = [
        ("policy-access-review", "Quarterly access reviews", [
            "Managers review the production access of their reports every quarter.",
            "Access not confirmed within 10 working days is revoked automatically.",
            "Break-glass accounts are reviewed monthly by the security team.",
            "The review evidence is kept for two years for the SOC 2 audit."]),
        ("policy-secrets", "Handling secrets", [
            "Secrets live in the central vault and are never committed to a repository.",
            "A secret found in a repository is rotated within 24 hours, even if the commit was reverted.",
            "Service credentials rotate every 90 days.",
            "Personal access tokens expire after 30 days."]),
        ("policy-travel-laptops", "Laptops on business travel", [
            "Laptops taken abroad must have full-disk encryption enabled.",
            "Travel to embargoed countries requires a loaner laptop from IT.",
            "Lost devices are reported to the service desk within one hour."]),
        ("policy-hazmat", "Hazardous goods in the warehouse", [
            "Lithium batteries are stored in a fire-rated cage at least 3 metres from charging stations.",
            "Aerosols are limited to 200 units per rack bay.",
            "Spills of corrosive goods are reported to the site safety officer immediately."]),
        ("policy-cold-chain", "Cold-chain shipments", [
            "Refrigerated pharmaceuticals are kept between 2 and 8 degrees Celsius.",
            "A temperature excursion longer than 30 minutes quarantines the shipment.",
            "Data loggers are read at every hand-over and the reading is attached to the consignment."]),
    ]
    for doc_id, title, sents in general:
        docs.append(sentences_doc(doc_id, title, sents, "policy"))
    by_id = {d["_id"]: d for d in docs}
    ask("pol-1", "What happens to access that is not confirmed in the quarterly review?", by_id["policy-access-review"], 1, "policy")
    ask("pol-2", "A password was committed to git and then reverted. Do we still rotate it?", by_id["policy-secrets"], 1, "policy")
    ask("pol-3", "how often do service credentials rotate", by_id["policy-secrets"], 2, "policy")
    ask("pol-4", "How far from chargers must lithium batteries be stored?", by_id["policy-hazmat"], 0, "policy")
    ask("pol-5", "At what temperature are refrigerated medicines kept?", by_id["policy-cold-chain"], 0, "policy")
    ask("pol-6", "What if a cold-chain shipment is out of range for 45 minutes?", by_id["policy-cold-chain"], 1, "policy")
    ask("pol-7", "Do I need a special laptop to travel to an embargoed country?", by_id["policy-travel-laptops"], 1, "policy")
    ask("pol-na-1", "Which airline should I book for business travel?", by_id["policy-travel-laptops"], None, "policy")
    return docs, queries, qrels, evidence
