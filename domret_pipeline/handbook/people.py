"""Team and policy pages of the handbook: on-call rotations, data retention, vendor
escalation, and general policies that have no per-entity twin."""

from __future__ import annotations

from .generate import Handbook
from .names import TEAMS

DATA = [("driver GPS traces", 90), ("customer support call recordings", 180), ("payment card tokens", 400),
        ("warehouse CCTV footage", 30), ("HL7 message archives", 2555), ("application debug logs", 14),
        ("delivery proof-of-signature images", 730), ("recruiting candidate files", 365)]

POLICIES = [
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


def add(hb: Handbook) -> None:
    _oncall(hb)
    _retention(hb)
    _vendors(hb)
    _policies(hb)


def _oncall(hb: Handbook) -> None:
    for team in TEAMS:
        page = hb.pick([5, 10, 15])
        handoff = hb.pick(["Monday 09:00", "Wednesday 10:00", "Friday 16:00"])
        postmortem = hb.pick([3, 5, 7, 10])
        sev = hb.pick(["SEV1", "SEV2"])
        slug = team.replace(" ", "-")
        oncall = hb.doc(f"oncall-{slug}", f"On-call rotation of the {team} team", [
            f"The {team} team runs a weekly primary and secondary on-call rotation.",
            f"The rotation hands off every {handoff} local time.",
            f"The primary must acknowledge a page within {page} minutes, or it escalates to the secondary.",
            f"A written postmortem is due within {postmortem} working days for every {sev} or worse incident owned by {team}.",
            "On-call engineers receive a fixed stipend per week on rotation.",
        ], "oncall")
        hb.ask(f"oc-{slug}-1", [f"How quickly must {team} on-call acknowledge a page?", f"{team} page acknowledgement time",
                                f"What is the ack deadline for the {team} primary on-call?"], oncall, 2, "oncall")
        if team in ("payments", "fleet", "security", "data platform", "mobile"):
            hb.ask(f"oc-{slug}-2", f"When is the postmortem due for a {team} incident?", oncall, 3, "oncall")
        if team in ("web", "commercial", "supply chain"):
            hb.ask(f"oc-{slug}-na", f"Which paging app and phone model does the {team} on-call use?", oncall, None, "oncall")


def _retention(hb: Handbook) -> None:
    for data, days in DATA:
        slug = data.split()[0].lower() + "-" + data.split()[1].lower()
        legal = hb.pick(["the legal hold register", "the privacy office", "the records manager"])
        store = hb.pick(["the EU data lake", "cold object storage in Frankfurt", "the on-premise archive"])
        retention = hb.doc(f"retention-{slug}", f"Retention of {data}", [
            f"{data[0].upper() + data[1:]} are kept for {days} days after collection.",
            f"They are stored in {store} and encrypted at rest.",
            f"Deletion runs nightly; items under a legal hold are skipped until {legal} releases them.",
            "Access requires a ticket that names the business purpose.",
        ], "retention")
        hb.ask(f"ret-{slug}-1", [f"How long do we keep {data}?", f"retention period {data}",
                                 f"After how many days are {data} deleted?"], retention, 0, "retention")
        if data in ("warehouse CCTV footage", "driver GPS traces"):
            hb.ask(f"ret-{slug}-na", f"Can {data} be shared with the police without a court order?", retention, None, "retention")


def _vendors(hb: Handbook) -> None:
    for team in TEAMS:
        vendor = hb.pick(["Acme Cloud", "Northwind Telecom", "Fabrikam Hosting", "Contoso Payments", "Tailspin Logistics"])
        response = hb.pick([15, 30, 60, 120])
        slug = team.replace(" ", "-")
        escalation = hb.doc(f"vendor-{slug}", f"Vendor escalation for the {team} team", [
            f"The main external supplier of the {team} team is {vendor}.",
            f"A priority-one ticket with {vendor} must be acknowledged by the vendor within {response} minutes under the contract.",
            f"Escalations to {vendor} are raised by the {team} on-call engineer, never by customers directly.",
            "Vendor performance is reviewed every quarter with procurement.",
        ], "vendor")
        if team in ("payments", "security", "clinical integrations", "mobile"):
            hb.ask(f"ven-{slug}-1", [f"How fast must the {team} team's vendor respond to a P1 ticket?",
                                     f"{team} supplier P1 response time"], escalation, 1, "vendor")
        if team in ("fleet", "web"):
            hb.ask(f"ven-{slug}-na", f"What is the yearly contract value with the {team} team's supplier?", escalation, None, "vendor")


def _policies(hb: Handbook) -> None:
    by_id = {doc_id: hb.doc(doc_id, title, sentences, "policy") for doc_id, title, sentences in POLICIES}
    hb.ask("pol-1", "What happens to access that is not confirmed in the quarterly review?", by_id["policy-access-review"], 1, "policy")
    hb.ask("pol-2", "A password was committed to git and then reverted. Do we still rotate it?", by_id["policy-secrets"], 1, "policy")
    hb.ask("pol-3", "how often do service credentials rotate", by_id["policy-secrets"], 2, "policy")
    hb.ask("pol-4", "How far from chargers must lithium batteries be stored?", by_id["policy-hazmat"], 0, "policy")
    hb.ask("pol-5", "At what temperature are refrigerated medicines kept?", by_id["policy-cold-chain"], 0, "policy")
    hb.ask("pol-6", "What if a cold-chain shipment is out of range for 45 minutes?", by_id["policy-cold-chain"], 1, "policy")
    hb.ask("pol-7", "Do I need a special laptop to travel to an embargoed country?", by_id["policy-travel-laptops"], 1, "policy")
    hb.ask("pol-na-1", "Which airline and hotel chain should I book for business travel?", by_id["policy-travel-laptops"], None, "policy")
    hb.ask("pol-na-2", "Who pays for the SOC 2 auditor's travel expenses?", by_id["policy-access-review"], None, "policy")
