"""Clinical-integration pages of the handbook: HL7 v2 segment mappings and ADT trigger events
handled by hl7-ingest (the seed's "CUI mapping in HL7")."""

from __future__ import annotations

from .generate import Handbook
from .names import SEGMENTS

ADT = [("A01", "admit"), ("A02", "transfer"), ("A03", "discharge"), ("A04", "register an outpatient"),
       ("A05", "pre-admit"), ("A08", "update patient information"), ("A11", "cancel an admit"), ("A40", "merge patient records")]


def add(hb: Handbook) -> None:
    for seg, seg_name, field, field_name, concept in SEGMENTS:
        vocab = hb.pick(["UMLS CUI", "SNOMED CT", "LOINC", "local code table LCT-7"])
        fallback = hb.pick(["rejected with an AE acknowledgement", "routed to the terminology work queue", "passed through unmapped and flagged"])
        version = hb.pick(["2.5.1", "2.3", "2.6"])
        mapping = hb.doc(f"hl7-{seg.lower()}-mapping", f"HL7 {seg} ({seg_name}) mapping", [
            f"The hl7-ingest interface accepts {seg} segments in HL7 version {version} messages.",
            f"Field {field} ({field_name}) carries the {concept}.",
            f"The interface maps {field} to a {vocab} concept before it is stored.",
            f"A value of {field} that has no mapping is {fallback}.",
            f"Repeating values in {field} are mapped one by one and kept in their original order.",
        ], "hl7")
        hb.ask(f"hl7-{seg.lower()}-1", [f"What terminology is {field} mapped to?", f"CUI mapping for {seg} {field_name}",
                                        f"In HL7 {seg}, which code system does the {field_name} end up in?"], mapping, 2, "hl7")
        hb.ask(f"hl7-{seg.lower()}-2", [f"What happens when {field} cannot be mapped?", f"unmapped {field} value handling",
                                        f"How does hl7-ingest treat a {seg} {field_name} with no mapping?"], mapping, 3, "hl7")
        if seg in ("OBX", "PID", "DG1"):
            hb.ask(f"hl7-{seg.lower()}-na", f"Which FHIR resource does the {seg} segment become after conversion?", mapping, None, "hl7")

    for code, action in ADT:
        route = hb.pick(["the bed-management feed", "the billing queue", "the master patient index", "the clinical data store"])
        retry = hb.pick([3, 5, 10])
        adt = hb.doc(f"hl7-adt-{code.lower()}", f"HL7 ADT^{code} ({action}) handling", [
            f"An ADT^{code} message tells hl7-ingest to {action}.",
            f"hl7-ingest forwards every ADT^{code} to {route} after validation.",
            f"If the downstream system is unavailable, ADT^{code} delivery is retried {retry} times before alerting.",
            "Messages are processed in the order of MSH-7, the message timestamp.",
        ], "hl7")
        if code in ("A01", "A08", "A40", "A03"):
            hb.ask(f"adt-{code.lower()}-1", [f"Where does hl7-ingest send ADT^{code} messages?",
                                             f"routing of ADT {code} ({action}) events"], adt, 1, "hl7")
        if code in ("A11", "A05"):
            hb.ask(f"adt-{code.lower()}-na", f"Which clinician must countersign an ADT^{code} before it is sent?", adt, None, "hl7")
