"""Warehouse pages of the handbook: the site directory (city -> site code), forklift safety
notices (by site code) and emergency procedures (by city)."""

from __future__ import annotations

from .generate import Handbook
from .names import SITE_CODES, SITES


def add(hb: Handbook) -> None:
    for site in SITES:
        code = SITE_CODES[site]
        directory = hb.doc(f"site-{site.lower()}", f"Site directory: {site}", [
            f"The {site} warehouse has the site code {code}.",
            f"{code} runs {hb.pick(['two', 'three'])} shifts on weekdays and one on Saturdays.",
            f"Deliveries to {code} are booked through the slot-booking service.",
        ], "sites")
        if site in ("Leeds", "Porto", "Calgary"):
            hb.ask(f"site-{site.lower()}-1", [f"What is the site code of the {site} warehouse?", f"{site} site code"],
                   directory, 0, "sites")
        _forklift(hb, site, code)
        _emergency(hb, site)


def _forklift(hb: Handbook, site: str, code: str) -> None:
    aisle = hb.pick([5, 6, 8, 10])
    dock = hb.pick([3, 4, 5])
    cert = hb.pick([12, 24, 36])
    charge = hb.pick(["Bay C", "the north annex", "Zone 4", "the mezzanine floor", "Dock 1"])
    checklist = hb.pick([8, 10, 12, 14])
    horn = hb.pick(["at every aisle intersection", "before reversing and at blind corners", "when entering a pedestrian crossing"])
    speed = hb.doc(f"forklift-{site.lower()}-speed", f"Forklift speed limits at {code}", [
        f"At {code}, forklifts may travel at most {aisle} km/h in storage aisles.",
        f"On loading docks the limit is {dock} km/h, and trucks must give way to pedestrians at all times.",
        f"Operators sound the horn {horn}.",
        "Speed limiters are checked by maintenance every quarter.",
    ], "forklift")
    ops = hb.doc(f"forklift-{site.lower()}-operations", f"Forklift operation and charging at {code}", [
        f"Lead-acid batteries at {code} are charged only in {charge}, which has forced ventilation.",
        f"Before each shift the operator completes a {checklist}-point inspection checklist in the warehouse app.",
        f"A truck that fails any checklist item is tagged out and reported to the {code} shift supervisor.",
        f"Operator certification at {code} is valid for {cert} months and is renewed with a practical assessment.",
        "Passengers are never carried on forks or pallets.",
    ], "forklift")
    slug = site.lower()
    hb.ask(f"fl-{slug}-1", [f"What is the forklift speed limit in the aisles at {site}?", f"{site} forklift max speed storage aisle",
                            f"How fast may a forklift drive between racks in the {site} warehouse?"], speed, 0, "forklift")
    hb.ask(f"fl-{slug}-2", [f"Where are forklift batteries charged at {site}?", f"{site} battery charging location lead-acid",
                            f"In which area of the {site} site do we charge truck batteries?"], ops, 0, "forklift")
    hb.ask(f"fl-{slug}-3", [f"How long is a forklift operator certificate valid at {site}?",
                            f"{site} operator certification validity months"], ops, 3, "forklift")
    if site in ("Leeds", "Nagoya", "Brisbane"):
        hb.ask(f"fl-{slug}-na", f"What is the maximum lifting height of the reach trucks in {site}?", speed, None, "forklift")


def _emergency(hb: Handbook, site: str) -> None:
    muster = hb.pick(["car park B", "the visitor entrance", "the east fence gate", "the truck marshalling yard"])
    drill = hb.pick(["every three months", "twice a year", "every month"])
    aid = hb.pick([2, 3, 4])
    emergency = hb.doc(f"emergency-{site.lower()}", f"Emergency procedures at {site}", [
        f"On a fire alarm, everyone at the {site} warehouse leaves by the nearest exit and gathers at {muster}.",
        f"Evacuation drills at {site} run {drill}.",
        f"Each shift at {site} has at least {aid} trained first aiders on the floor.",
        "Forklifts are parked with forks lowered and keys removed before leaving.",
    ], "emergency")
    if site in ("Rotterdam", "Memphis", "Porto", "Durban", "Calgary", "Lyon"):
        hb.ask(f"em-{site.lower()}-1", [f"Where is the muster point at {site}?", f"{site} fire alarm assembly point",
                                        f"Where do we gather after evacuating the {site} warehouse?"], emergency, 0, "emergency")
    if site in ("Tilburg", "Gdansk", "Monterrey"):
        hb.ask(f"em-{site.lower()}-na", f"What is the name and phone number of the fire warden at {site}?", emergency, None, "emergency")
