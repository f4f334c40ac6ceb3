"""The entities of the sample handbook: services with their teams and internal codenames, sites
with their site codes, HL7 segments, teams. Their names recur across passages on purpose (see
generate.py): the codenames and site codes are what the base model cannot know."""

SERVICES = [
    ("checkout-api", "payments"), ("ledger-sync", "finance platform"), ("route-planner", "fleet"),
    ("label-printer-gateway", "warehouse systems"), ("customer-portal", "web"), ("inventory-feed", "supply chain"),
    ("dispatch-radio-bridge", "fleet"), ("invoice-renderer", "finance platform"), ("returns-intake", "customer ops"),
    ("driver-app-backend", "mobile"), ("pricing-engine", "commercial"), ("hl7-ingest", "clinical integrations"),
    ("warehouse-scanner-hub", "warehouse systems"), ("customs-declarations", "supply chain"), ("tariff-calculator", "commercial"),
    ("notification-service", "web"), ("fuel-card-sync", "fleet"), ("payroll-export", "finance platform"),
    ("slot-booking", "customer ops"), ("telematics-ingest", "fleet"),
]
# Runbooks, deploy notes and dependency pages name a service only by its codename, as teams
# write them; people ask by the service name. Only the service catalogue connects the two.
CODENAMES = dict(zip([name for name, _ in SERVICES], [
    "Kestrel", "Heron", "Osprey", "Wren", "Magpie", "Plover", "Curlew", "Siskin", "Dunlin", "Merlin",
    "Avocet", "Bittern", "Linnet", "Godwit", "Shrike", "Starling", "Petrel", "Tern", "Whimbrel", "Nightjar"]))
SITES = ["Rotterdam", "Leeds", "Memphis", "Lyon", "Gdansk", "Monterrey", "Brisbane", "Nagoya", "Porto", "Calgary", "Durban", "Tilburg"]
# Safety notices are written per site code; people ask by city. The site directory connects them.
SITE_CODES = dict(zip(SITES, ["DC-07", "DC-12", "DC-31", "DC-04", "DC-19", "DC-26", "DC-33", "DC-15", "DC-22", "DC-09", "DC-28", "DC-02"]))
SEGMENTS = [
    ("PID", "patient identification", "PID-3", "patient identifier list", "MRN"),
    ("PV1", "patient visit", "PV1-2", "patient class", "encounter class"),
    ("OBR", "observation request", "OBR-4", "universal service identifier", "ordered test code"),
    ("OBX", "observation result", "OBX-3", "observation identifier", "LOINC code"),
    ("ORC", "common order", "ORC-1", "order control", "order action"),
    ("DG1", "diagnosis", "DG1-3", "diagnosis code", "ICD-10-CM code"),
    ("AL1", "patient allergy", "AL1-3", "allergen code", "allergen concept"),
    ("RXE", "pharmacy encoded order", "RXE-2", "give code", "RxNorm code"),
    ("NK1", "next of kin", "NK1-3", "relationship", "relationship code"),
    ("MSH", "message header", "MSH-9", "message type", "trigger event"),
]
TEAMS = ["payments", "finance platform", "fleet", "warehouse systems", "web", "supply chain", "customer ops",
         "mobile", "commercial", "clinical integrations", "security", "data platform"]
