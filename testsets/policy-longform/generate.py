"""Writes the policy-longform test set: docs/, test.jsonl, train.jsonl (seeded, reproducible).

    python testsets/policy-longform/generate.py        # rewrites the files beside this script
    python testsets/policy-longform/generate.py DIR    # or writes them under DIR

Everything here was written for evalkit: the company (Fernhollow, a fictional design studio),
its handbook and the questions. Each handbook rule is one sentence in a policy document plus
the procedure sentence after it; a question asks about one rule with its own numbers, and the
reference answer is in the People Team's house style:

    Short answer: <Yes/No/..., the decision for this case>
    Why: <Policy>, section <n>: <the rule, as the handbook words it>
    Next step: <what to do, as the handbook words it>
    — Fernhollow People Team

Rules are split in two: "shared" rules appear in train and test (with other numbers and other
phrasings in test), "new" rules only in test (the handbook grew after the train split was
written, as handbooks do). So a model trained on train can learn the house style, but not the
content of rules it never saw: that has to come from the documents.
"""

from __future__ import annotations

import json
import random
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

SEED = 11
HERE = Path(__file__).resolve().parent
SIGN_OFF = "— Fernhollow People Team"
N_TEST, N_TRAIN = 240, 440


@dataclass(frozen=True)
class Rule:
    """One handbook rule. Numeric rules compare the case's value `v` with `limit`: `ok`
    says whether `v` passes (`within` for caps, `at_least` for notice periods)."""

    policy: str
    section: str
    rule: str           # the handbook sentence ({limit} filled in)
    procedure: str      # the sentence after it: what to do
    questions: tuple[str, ...]  # {v} is the case's value
    yes: str            # short answer when the case passes ({v}, {limit})
    no: str = ""        # short answer when it does not
    limit: float | None = None
    values: tuple[float, ...] = ()
    test: str = "at_most"  # at_most | at_least | fixed
    shared: bool = True
    extra: dict = field(default_factory=dict)

    def passes(self, v: float) -> bool:
        if self.test == "at_most":
            return v <= self.limit
        return v >= self.limit


POLICIES = {
    "expenses": ("Expenses Policy", "Money & expenses", "3.4", "2026-02-01",
                 "This policy says what Fernhollow pays back when you spend your own money on "
                 "work, and how to claim it. Claims go through Tally, the expenses app, and are "
                 "paid with the next monthly salary run."),
    "travel": ("Business Travel Policy", "Money & expenses", "2.1", "2026-01-15",
               "Book work travel through Wayfare, our travel desk, unless this policy says "
               "otherwise. Travel should be the cheapest reasonable option that gets you there "
               "rested and on time."),
    "leave": ("Annual Leave Policy", "Time off", "5.0", "2025-11-01",
              "Everyone at Fernhollow gets paid annual leave on top of public holidays. Leave is "
              "booked in Rota, our time-off calendar, and approved by your team lead."),
    "family": ("Parental and Family Leave Policy", "Time off", "2.2", "2026-03-01",
               "Fernhollow supports people becoming parents and caring for family. This policy "
               "covers parental leave, adoption leave and short-notice care days."),
    "sickness": ("Sickness Absence Policy", "Time off", "1.3", "2025-09-01",
                 "If you are ill, rest and get better; this policy only says whom to tell and "
                 "when a doctor's note is needed."),
    "remote": ("Remote and Hybrid Work Policy", "Ways of working", "4.1", "2026-04-01",
               "Fernhollow is a hybrid company: teams meet in the studio on agreed anchor days "
               "and work from wherever suits them on the others."),
    "equipment": ("Equipment and Devices Policy", "Ways of working", "2.0", "2025-12-01",
                  "Fernhollow provides the equipment you need for your role. Equipment stays "
                  "company property and is managed by the IT Desk."),
    "security": ("Information Security Policy", "Security & data", "6.2", "2026-01-05",
                 "These rules protect client work and our colleagues' data. They apply to "
                 "everyone with a Fernhollow account, including contractors."),
    "learning": ("Learning and Development Policy", "Growth", "1.1", "2026-02-20",
                 "Every person at Fernhollow has a yearly learning budget for courses, books, "
                 "conferences and certifications that help them in their role."),
    "gifts": ("Gifts and Hospitality Policy", "Conduct", "3.0", "2025-10-10",
              "Clients and suppliers sometimes offer gifts or hospitality. This policy keeps "
              "those offers small and visible, so nobody is put in an awkward position."),
    "hours": ("Working Hours and Overtime Policy", "Ways of working", "2.3", "2026-01-10",
              "Standard working time at Fernhollow is 37.5 hours a week. This policy covers "
              "core hours, overtime and time off in lieu."),
    "data": ("Client Data Handling Policy", "Security & data", "1.4", "2026-03-15",
             "Client files, briefs and personal data entrusted to us are handled under this "
             "policy and our contracts with each client."),
}

R = Rule
RULES: list[Rule] = [
    # --- expenses -------------------------------------------------------------------------
    R("expenses", "2.1", "Meals on a work day away from your home office are reimbursed up to "
      "€{limit} per day.", "Claim meals in Tally under 'Subsistence' with an itemised receipt.",
      ("I was at a client site all day and spent €{v} on food. Will that be paid back in full?",
       "My meals during an away day came to €{v}. Is all of it reimbursable?",
       "Working off-site today, lunch and dinner cost me €{v} together. Can I claim the lot?"),
      "Yes, €{v} is within the €{limit} daily meal allowance.",
      "No, only €{limit} of the €{v} can be claimed; the rest is yours.", 45,
      (28, 36, 41, 44, 45, 52, 60, 73)),
    R("expenses", "2.4", "Taxis home are reimbursed up to €{limit} when you finish work after "
      "21:00.", "Claim the fare in Tally under 'Local travel' and note the time you finished.",
      ("I left the studio at 22:30 and the taxi home was €{v}. Will Fernhollow cover it?",
       "Late finish last night, cab home cost €{v}. Can I expense it?",
       "After working until eleven I took a taxi for €{v}. Is that covered?"),
      "Yes, a €{v} taxi after 21:00 is within the €{limit} limit.",
      "Only partly: taxis after 21:00 are covered up to €{limit}, so €{v} is over the limit.", 40,
      (18, 25, 33, 39, 47, 55, 62)),
    R("expenses", "3.2", "Alcohol is never reimbursed, except at client entertainment approved "
      "in advance by a director.", "Ask a director for approval in Tally before the event.",
      ("Can I claim the wine we had with dinner on a work trip?",
       "Is beer at a team dinner something I can put on expenses?",
       "We had drinks after the workshop. Are those reimbursable?"),
      "No, alcohol is not reimbursed unless a director approved client entertainment in "
      "advance.", test="fixed"),
    R("expenses", "4.1", "Expense claims must be submitted within {limit} days of the purchase "
      "date.", "Submit late claims to finance@fernhollow.example with a short reason.",
      ("I found a receipt from {v} days ago. Can I still claim it?",
       "Is it too late to expense something I bought {v} days back?",
       "My train ticket is {v} days old and I never claimed it. Still possible?"),
      "Yes, {v} days is within the {limit}-day window.",
      "No, {v} days is past the {limit}-day window, so it needs finance's approval.", 60,
      (12, 30, 45, 59, 61, 75, 90), shared=False),
    R("expenses", "5.3", "Client entertainment is capped at €{limit} per guest and needs a "
      "director's approval in advance.", "Request approval in Tally under 'Client "
      "entertainment' and list the guests.",
      ("I want to take a client to dinner at about €{v} a head. Is that allowed?",
       "Can I spend €{v} per person entertaining a client?",
       "Planning a client lunch, roughly €{v} per guest. OK under the policy?"),
      "Yes, €{v} per guest is within the €{limit} cap, with a director's approval first.",
      "No, €{v} per guest is above the €{limit} cap.", 90, (55, 70, 85, 90, 110, 140),
      shared=False),
    # --- travel ---------------------------------------------------------------------------
    R("travel", "1.2", "Trains are booked in standard class, except for journeys over {limit} "
      "hours, which may be booked in first class.", "Book through Wayfare and pick the class "
      "in the booking form.",
      ("My train to the client takes {v} hours. Can I book first class?",
       "Is first class allowed for a {v}-hour rail journey?",
       "The trip is {v} hours by train. Standard or first class?"),
      "Yes, a {v}-hour journey is over {limit} hours, so first class is allowed.",
      "No, {v} hours is not over {limit} hours, so book standard class.", 4,
      (1.5, 2, 3, 3.5, 4.5, 5, 6), test="at_least"),
    R("travel", "2.1", "Hotels are capped at €{limit} per night in capital cities and €130 "
      "elsewhere.", "Book through Wayfare; a hotel over the cap needs your lead's approval in "
      "the booking.",
      ("Is a €{v} per night hotel in Lisbon within policy?",
       "The only hotel near the Berlin venue is €{v} a night. Can I book it?",
       "I found a room in Paris for €{v} per night. Is that allowed?"),
      "Yes, €{v} a night is within the €{limit} capital-city cap.",
      "No, €{v} a night is above the €{limit} capital-city cap, so it needs your lead's "
      "approval.", 180, (120, 150, 175, 180, 195, 220, 260)),
    R("travel", "2.5", "Flights must be booked at least {limit} days before departure unless "
      "the trip was arranged at short notice by a client.", "Book in Wayfare and, for a short-"
      "notice trip, add the client's request to the booking.",
      ("Our trip is in {v} days and I haven't booked the flight. Is that a problem?",
       "Can I book a flight {v} days before I fly?",
       "I need to fly out in {v} days for a workshop. Is booking now within policy?"),
      "Yes, {v} days ahead meets the {limit}-day booking rule.",
      "No, {v} days is less than the {limit} days required, unless the client set the trip "
      "at short notice.", 14, (3, 7, 10, 13, 14, 21, 30), test="at_least"),
    R("travel", "3.1", "The daily allowance abroad is €{limit}, paid for each night away.",
      "The allowance is paid automatically once your trip is in Wayfare; no receipts are "
      "needed.",
      ("I'm away abroad for a conference and spent €{v} a day on incidentals. Is that all "
       "covered by the allowance?",
       "Does the travel allowance abroad cover €{v} per day?",
       "Will a daily allowance of €{v} be paid for my trip to Milan?"),
      "Yes, €{v} a day is within the €{limit} daily allowance.",
      "No, the daily allowance abroad is €{limit}, so €{v} a day is more than it pays.", 35,
      (20, 30, 35, 40, 50), shared=False),
    R("travel", "4.2", "Mileage in your own car is paid at €{limit} per kilometre.",
      "Log the trip in Tally under 'Mileage' with the start and end addresses.",
      ("I drove my own car to a client. Is €{v} per kilometre what I can claim?",
       "Can I claim €{v} a kilometre for using my car for work?",
       "What about mileage: is €{v} per km the rate?"),
      "Yes, mileage is paid at €{limit} per kilometre.",
      "No, mileage is paid at €{limit} per kilometre, not €{v}.", 0.3,
      (0.25, 0.3, 0.35, 0.4, 0.45), test="fixed_value"),
    # --- leave ----------------------------------------------------------------------------
    R("leave", "1.1", "Full-time staff get {limit} days of paid annual leave a year, plus "
      "public holidays.", "Book leave in Rota so your lead can approve it.",
      ("Do I get {v} days of annual leave as a full-timer?",
       "Is it true full-time staff have {v} days of holiday a year?",
       "How does {v} days of paid leave a year compare with what I'm entitled to?"),
      "Yes, full-time staff get {limit} days of paid annual leave a year.",
      "No, full-time staff get {limit} days of paid annual leave a year, not {v}.", 27,
      (25, 26, 27, 28, 30), test="fixed_value"),
    R("leave", "2.3", "Up to {limit} unused days can be carried over into the next year and "
      "must be used by 31 March.", "Ask your lead to confirm the carry-over in Rota before "
      "31 December.",
      ("I have {v} days left this year. Can I carry them all over?",
       "Can {v} unused holiday days roll into next year?",
       "If I don't take {v} of my days, will they carry over?"),
      "Yes, {v} days is within the {limit}-day carry-over, to be used by 31 March.",
      "Only {limit} of the {v} days can be carried over; use the rest before 31 December.", 5,
      (2, 3, 5, 6, 8, 10)),
    R("leave", "3.1", "Leave of more than five days needs at least {limit} weeks' notice.",
      "Request it in Rota; your lead replies within five working days.",
      ("I want two weeks off starting in {v} weeks. Is that enough notice?",
       "Can I book a long holiday with {v} weeks' notice?",
       "Is {v} weeks' notice fine for a ten-day break?"),
      "Yes, {v} weeks' notice meets the {limit}-week minimum for leave over five days.",
      "No, leave over five days needs {limit} weeks' notice, and {v} weeks is less.", 4,
      (1, 2, 3, 4, 6, 8), test="at_least"),
    R("leave", "4.2", "After {limit} years of service you can take an unpaid sabbatical of up "
      "to three months.", "Discuss it with your lead, then apply to the People Team at least "
      "three months ahead.",
      ("I've been here {v} years. Can I take an unpaid sabbatical?",
       "Am I eligible for a sabbatical after {v} years at Fernhollow?",
       "With {v} years of service, could I take three months off unpaid?"),
      "Yes, with {v} years of service you qualify for an unpaid sabbatical of up to three "
      "months.", "No, sabbaticals need {limit} years of service and you have {v}.", 5,
      (2, 3, 4, 5, 6, 8), test="at_least", shared=False),
    # --- family ---------------------------------------------------------------------------
    R("family", "1.1", "Birth parents get {limit} weeks of parental leave on full pay.",
      "Tell the People Team at least eight weeks before you plan to start.",
      ("Will I get {v} weeks on full pay when my baby is born?",
       "Is parental leave {v} weeks at full pay for the birth parent?",
       "I'm expecting. Do I get {v} weeks fully paid?"),
      "Yes, birth parents get {limit} weeks of parental leave on full pay.",
      "No, birth parents get {limit} weeks on full pay, not {v}.", 26, (16, 20, 26, 30),
      test="fixed_value"),
    R("family", "1.3", "Partners get {limit} weeks of leave on full pay, to be taken within "
      "a year of the birth or adoption.", "Book it in Rota and tell the People Team the "
      "expected date.",
      ("My partner is having a baby. Can I take {v} weeks off on full pay?",
       "As the non-birth parent, do I get {v} paid weeks?",
       "Is partner leave {v} weeks with full pay?"),
      "Yes, partners get {limit} weeks on full pay within a year of the birth.",
      "No, partner leave is {limit} weeks on full pay, not {v}.", 6, (2, 4, 6, 8),
      test="fixed_value"),
    R("family", "3.2", "Everyone can take up to {limit} paid care days a year when a "
      "dependant needs them at short notice.", "Log care days in Rota as 'Care' on the day.",
      ("My kid is ill. Can I take my {v}th care day this year on pay?",
       "I've needed {v} care days this year. Are they all paid?",
       "Is a {v}th short-notice care day still paid?"),
      "Yes, {v} days is within the {limit} paid care days a year.",
      "No, only {limit} care days a year are paid, so the {v}th is unpaid or taken as leave.", 5,
      (2, 3, 4, 5, 6, 7), shared=False),
    # --- sickness -------------------------------------------------------------------------
    R("sickness", "1.1", "Tell your lead before 10:00 on the first day you are off sick.",
      "Then log the absence in Rota as 'Sick' the same day.",
      ("I woke up ill. Who do I tell and by when?",
       "What should I do on the first morning I'm too sick to work?",
       "I'm off sick today. What's the rule for letting people know?"),
      "Tell your lead before 10:00 today.", test="fixed"),
    R("sickness", "2.1", "A doctor's note is needed only after {limit} calendar days of "
      "sickness in a row.", "Upload the note in Rota against your absence.",
      ("I've been off sick for {v} days. Do I need a doctor's note?",
       "Is a sick note required after {v} days off ill?",
       "After {v} days of illness, do I have to see a doctor for a note?"),
      "No, a note is only needed after {limit} days in a row, and you are at {v}.",
      "Yes, after {limit} days in a row you need a doctor's note.", 7, (2, 3, 5, 7, 8, 10)),
    R("sickness", "3.4", "Sick pay is full pay for the first {limit} weeks of absence in any "
      "twelve months.", "Talk to the People Team before that point so we can plan support "
      "together.",
      ("I've been unwell for {v} weeks this year. Am I still on full pay?",
       "Does full sick pay continue after {v} weeks?",
       "Will I still be paid in full at week {v} of sick leave?"),
      "Yes, full sick pay lasts {limit} weeks, and you are at {v}.",
      "No, full sick pay covers {limit} weeks in twelve months, and {v} weeks is past that.",
      12, (2, 6, 10, 12, 14, 18), shared=False),
    # --- remote ---------------------------------------------------------------------------
    R("remote", "1.2", "Teams meet in the studio on {limit} anchor days a week, agreed by each "
      "team.", "Check your team's anchor days in Rota and mark the others as remote.",
      ("Can I work from home {v} days a week?",
       "Is it fine to be in the studio only {v} days a week?",
       "How many office days do I need: would {v} do?"),
      "It depends on the days: you need to be in on your team's {limit} anchor days a week.",
      "It depends on the days: you need to be in on your team's {limit} anchor days a week.", 2,
      (1, 2, 3, 4), test="fixed_value"),
    R("remote", "2.3", "You can work from another country for up to {limit} days in any "
      "twelve months.", "Register each stay with the People Team two weeks ahead for tax "
      "checks.",
      ("Can I work from Spain for {v} days this year?",
       "I'd like to work abroad for {v} days. Is that allowed?",
       "Would {v} days of working from my family's place in Italy be OK?"),
      "Yes, {v} days is within the {limit}-day limit for working abroad.",
      "No, working abroad is limited to {limit} days in twelve months.", 30,
      (10, 14, 21, 30, 45, 60)),
    R("remote", "3.1", "A one-off home office allowance of €{limit} is paid when you join.",
      "Claim it in Tally under 'Home office' within your first three months.",
      ("Can I claim €{v} for my home desk and chair?",
       "Is the home office allowance €{v}?",
       "I spent €{v} setting up my home office. How much of that is covered?"),
      "Yes, €{v} is within the one-off €{limit} home office allowance.",
      "Only €{limit} of it: the home office allowance is a one-off €{limit}.", 400,
      (150, 300, 400, 450, 600), shared=False),
    # --- equipment ------------------------------------------------------------------------
    R("equipment", "1.1", "Laptops are replaced every {limit} years, or sooner if they fail.",
      "Raise a replacement ticket with the IT Desk in Helpline.",
      ("My laptop is {v} years old. Can I get a new one?",
       "Am I due a laptop refresh after {v} years?",
       "Is a {v}-year-old laptop due for replacement?"),
      "Yes, laptops are replaced every {limit} years and yours is {v}.",
      "Not yet: laptops are replaced every {limit} years, unless yours has failed.", 3,
      (1, 2, 3, 4, 5), test="at_least"),
    R("equipment", "2.2", "A lost or stolen device must be reported to the IT Desk within "
      "{limit} hours.", "Call the IT Desk on extension 400 or raise an urgent ticket in "
      "Helpline.",
      ("I lost my work phone {v} hours ago. Is it too late to report it?",
       "My laptop was stolen {v} hours ago. What now?",
       "I noticed {v} hours ago that my tablet is missing. Do I still report it?"),
      "Report it now: lost devices must be reported within {limit} hours, and you are at "
      "{v}.", "Report it now: the limit is {limit} hours, so tell the IT Desk straight away.",
      24, (1, 3, 8, 20, 30, 48)),
    R("equipment", "3.1", "Personal devices may be used for email and chat only after they "
      "are enrolled in device management.", "Enrol the device through the Helpline app.",
      ("Can I read work email on my own phone?",
       "Is Slack on my personal tablet allowed?",
       "Can I use my private laptop for work chat?"),
      "Yes, once the device is enrolled in device management.", test="fixed"),
    R("equipment", "4.1", "Staff can buy their old laptop for €{limit} when it is replaced.",
      "Ask the IT Desk in Helpline before the swap so the disk can be wiped.",
      ("Can I buy my old laptop for €{v}?",
       "When my laptop is replaced, can I keep it for €{v}?",
       "Is €{v} the price to buy my retired work laptop?"),
      "Yes, you can buy it for €{limit} once it is replaced.",
      "You can buy it, but the price is €{limit}, not €{v}.", 100, (50, 100, 150, 200),
      test="fixed_value", shared=False),
    # --- security -------------------------------------------------------------------------
    R("security", "1.2", "Passwords must be at least {limit} characters long and kept in the "
      "company password manager.", "Set it up through Keyring, the company password manager.",
      ("Is a {v}-character password long enough?",
       "Can I use a password of {v} characters for my account?",
       "My new password has {v} characters. Is that OK?"),
      "Yes, {v} characters meets the {limit}-character minimum.",
      "No, passwords need at least {limit} characters and yours has {v}.", 14,
      (8, 10, 12, 14, 16, 20), test="at_least"),
    R("security", "2.1", "Suspected phishing must be reported with the 'Report' button, "
      "without clicking links or replying.", "Then delete the message; the security team "
      "follows up if needed.",
      ("I got a weird email asking me to log in. What do I do?",
       "An email from 'IT' wants my password. Should I reply?",
       "I think I just received phishing. How do I handle it?"),
      "Report it with the 'Report' button and don't click or reply.", test="fixed"),
    R("security", "3.3", "USB storage is blocked on company laptops; share files through "
      "Studio Drive instead.", "Ask the IT Desk for a guest link if a client needs to send "
      "large files.",
      ("Can I copy client files to a USB stick?",
       "Is it OK to use a thumb drive on my work laptop?",
       "A client gave me a USB drive with assets. Can I plug it in?"),
      "No, USB storage is blocked; use Studio Drive.", test="fixed"),
    R("security", "4.1", "Screens must lock after {limit} minutes of inactivity.",
      "The setting is enforced by device management; do not change it.",
      ("Can I set my screen lock to {v} minutes?",
       "Is a {v}-minute screen timeout allowed?",
       "Could my laptop lock after {v} minutes instead?"),
      "Yes, {v} minutes is within the {limit}-minute limit.",
      "No, screens must lock after {limit} minutes at most.", 5, (1, 3, 5, 10, 15),
      shared=False),
    # --- learning -------------------------------------------------------------------------
    R("learning", "1.1", "Each person has a learning budget of €{limit} a year.",
      "Request spending in Tally under 'Learning' before you book.",
      ("Can I spend €{v} on a course this year?",
       "Is €{v} within my yearly learning budget?",
       "I found a €{v} certification. Does my budget cover it?"),
      "Yes, €{v} is within the €{limit} yearly learning budget.",
      "No, €{v} is more than the €{limit} yearly budget, so the rest needs your lead's "
      "support.", 1200, (300, 800, 1200, 1500, 2000)),
    R("learning", "2.1", "You can take up to {limit} learning days a year, on top of annual "
      "leave.", "Book them in Rota as 'Learning'.",
      ("Can I take {v} days for a course this year without using leave?",
       "Are {v} learning days a year allowed?",
       "Will {v} days of training count against my holiday?"),
      "Yes, {v} days is within the {limit} learning days a year.",
      "No, you can take {limit} learning days a year; the rest comes from leave.", 5,
      (2, 3, 5, 7, 10)),
    R("learning", "3.2", "If you leave within {limit} months of a course costing over €1,000, "
      "half of it is repaid.", "Read the repayment note in Tally before you book.",
      ("If I leave {v} months after an expensive course, do I pay it back?",
       "Do I owe anything for a €1,500 course if I resign {v} months later?",
       "Is there a repayment if I quit {v} months after my certification?"),
      "No, the repayment applies only within {limit} months, and {v} months is past it.",
      "Yes, half of it is repaid if you leave within {limit} months.", 12,
      (3, 6, 11, 12, 13, 18), test="after", shared=False),
    # --- gifts ----------------------------------------------------------------------------
    R("gifts", "1.1", "Gifts worth up to €{limit} may be kept; anything above must be declared.",
      "Declare gifts in the register in Tally under 'Gifts'.",
      ("A supplier sent me a bottle worth about €{v}. Can I keep it?",
       "Can I accept a €{v} gift from a client?",
       "A client gave me a present worth €{v}. Is that fine?"),
      "Yes, a €{v} gift is within the €{limit} limit.",
      "Declare it: gifts above €{limit} must be declared, and €{v} is above.", 50,
      (20, 35, 50, 60, 90, 150)),
    R("gifts", "2.2", "Hospitality such as a dinner or event may be accepted up to {limit} "
      "times a year from the same client.", "Record each one in the register in Tally.",
      ("This would be my {v}th dinner with the same client this year. Can I go?",
       "A client has invited me out for the {v}th time this year. Is that OK?",
       "Can I accept a {v}th event invitation from one client?"),
      "Yes, {v} times is within the {limit} a year from one client.",
      "No, hospitality from one client is limited to {limit} times a year.", 4,
      (2, 3, 4, 5, 6), shared=False),
    # --- hours ----------------------------------------------------------------------------
    R("hours", "1.1", "Core hours are 10:00 to 16:00, when everyone is available for "
      "meetings.", "Agree other hours with your lead and put them in your calendar.",
      ("Can I start at 11:00 every day?",
       "Is finishing at 15:00 allowed?",
       "What hours do I have to be around?"),
      "It depends on your lead: core hours are 10:00 to 16:00.", test="fixed"),
    R("hours", "2.1", "Overtime over {limit} hours in a week is paid back as time off in lieu.",
      "Log the hours in Rota within the same month.",
      ("I worked {v} extra hours this week. Do I get time off?",
       "Does {v} hours of overtime earn time off in lieu?",
       "Are {v} extra hours in one week compensated?"),
      "Yes, overtime over {limit} hours in a week is given back as time off in lieu.",
      "No, only overtime over {limit} hours a week is given back.", 3, (1, 2, 3, 5, 8),
      test="above"),
    R("hours", "3.1", "Nobody is expected to answer messages between 19:00 and 08:00.",
      "Use scheduled send for messages written out of hours.",
      ("Do I need to reply to my lead's message at 22:00?",
       "Am I expected to answer Slack late in the evening?",
       "Should I check messages before 8 in the morning?"),
      "No, nobody is expected to reply between 19:00 and 08:00.", test="fixed", shared=False),
    # --- client data ----------------------------------------------------------------------
    R("data", "1.1", "Client files are stored only in Studio Drive, never on personal "
      "accounts.", "Move anything saved elsewhere to the client's Studio Drive folder.",
      ("Can I keep client drafts in my personal Dropbox?",
       "Is it OK to email client files to my own address?",
       "Can I save client work on my personal Google Drive?"),
      "No, client files belong in Studio Drive only.", test="fixed"),
    R("data", "2.2", "Client project files are deleted {limit} months after the project "
      "closes, unless the contract says otherwise.", "Export anything you need for your "
      "portfolio with the client's written consent.",
      ("Are client files still kept {v} months after the project ended?",
       "Will we still have the client folder {v} months after closing the project?",
       "Can I find files from a project that closed {v} months ago?"),
      "Yes, files are kept for {limit} months after the project closes.",
      "No, files are deleted {limit} months after the project closes.", 18,
      (6, 12, 18, 20, 24, 36), shared=False),
    R("data", "3.1", "A suspected data breach must be reported to the security team within "
      "{limit} hour.", "Email security@fernhollow.example and call extension 400.",
      ("I sent a client file to the wrong person {v} hours ago. What do I do?",
       "A folder was shared publicly by mistake {v} hours ago. Is it too late to report?",
       "I think client data leaked {v} hours ago. Whom do I tell?"),
      "Report it now: breaches must be reported within {limit} hour.",
      "Report it now: breaches must be reported within {limit} hour.", 1, (1, 2, 3, 5),
      test="fixed_value", shared=False),
]

OPENERS = ("", "", "", "Hi, quick question. ", "Hello! ", "Sorry if this is obvious: ",
           "Asking for my team: ", "Before I book anything: ", "Quick check: ")


def fmt(x: float) -> str:
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.2f}" if x < 1 else f"{x:g}"  # €0.30 per kilometre, 3.5 hours


def short_answer(rule: Rule, v: float | None) -> str:
    if rule.test == "fixed" or v is None:
        return rule.yes
    limit = rule.limit
    if rule.test == "fixed_value":
        ok = v == limit
    elif rule.test == "above":
        ok = v > limit
    elif rule.test == "after":  # the "yes" text is the outcome once v reaches the limit
        ok = v >= limit
    else:
        ok = rule.passes(v)
    return wording(rule.yes if ok else rule.no, v, limit=fmt(limit))


def rule_sentence(rule: Rule) -> str:
    return rule.rule.format(limit=fmt(rule.limit) if rule.limit is not None else "")


def reference(rule: Rule, v: float | None) -> str:
    title = POLICIES[rule.policy][0]
    return "\n".join([f"Short answer: {short_answer(rule, v)}",
                      f"Why: {title}, section {rule.section}: {rule_sentence(rule)}",
                      f"Next step: {rule.procedure}", SIGN_OFF])


def ordinal(n: float) -> str:
    n = int(n)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def wording(template: str, v: float | None, **more: str) -> str:
    """The template with the case's value; "{v}th" is an ordinal, one of a unit singular."""
    text = template.replace("{v}th", "{o}").format(v=fmt(v) if v is not None else "",
                                                     o=ordinal(v) if v is not None else "",
                                                     **more)
    text = re.sub(r"\b1 (hour|day|week|month|year)s\b('?)", r"1 \1\2", text)
    return text.replace("1 week' notice", "1 week's notice")


def question(rule: Rule, template: str, v: float | None, opener: str) -> str:
    text = wording(template, v)
    if opener and not (text.startswith("I ") or text.startswith("I'")):
        text = text[0].lower() + text[1:]
    return opener + text


def items_for(rule: Rule, templates: tuple[str, ...], n: int, rng: random.Random,
              seen: set[str]) -> list[tuple[Rule, str, str]]:
    """Up to n distinct (rule, question, reference) cases from these phrasings."""
    out = []
    values: list[float | None] = list(rule.values) or [None]
    combos = [(t, v, o) for t in templates for v in values for o in OPENERS]
    rng.shuffle(combos)
    for t, v, o in combos:
        q = question(rule, t, v, o)
        if q.lower() in seen:
            continue
        seen.add(q.lower())
        out.append((rule, q, reference(rule, v)))
        if len(out) == n:
            break
    return out


def split(rng: random.Random) -> tuple[list, list]:
    """Train: shared rules, their first phrasings. Test: shared rules' last phrasing (other
    numbers) and every phrasing of the new rules."""
    shared = [r for r in RULES if r.shared]
    new = [r for r in RULES if not r.shared]
    seen: set[str] = set()
    train, test = [], []
    per_train = -(-N_TRAIN // len(shared))
    for r in shared:
        train += items_for(r, r.questions[:-1], per_train, rng, seen)
    n_shared_test = N_TEST // 3
    per_shared = -(-n_shared_test // len(shared))
    per_new = -(-(N_TEST - n_shared_test) // len(new))
    for r in shared:
        test += items_for(r, r.questions[-1:], per_shared, rng, seen)
    for r in new:
        test += items_for(r, r.questions, per_new, rng, seen)
    rng.shuffle(train)
    rng.shuffle(test)
    return test[:N_TEST], train[:N_TRAIN]


def document(policy: str) -> str:
    title, area, version, effective, intro = POLICIES[policy]
    lines = [f"# {title}", "", f"*Fernhollow Handbook · {area} · version {version} · "
             f"effective {effective}*", "", intro, ""]
    for r in sorted((r for r in RULES if r.policy == policy),
                    key=lambda r: [int(x) for x in r.section.split(".")]):
        lines += [f"## Section {r.section}", "", f"{rule_sentence(r)} {r.procedure}", ""]
    lines += ["## Questions", "", "Ask the People Team in #people-help if a case is not "
              "covered here. Exceptions are agreed in writing by a director.", ""]
    return "\n".join(lines)


def write_jsonl(path: Path, prefix: str, rows: list) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for n, (rule, q, ref) in enumerate(rows, 1):
            fh.write(json.dumps({"id": f"{prefix}-{n:04d}", "input": q, "expected": ref,
                                 "doc_ids": [rule.policy], "cluster": rule.policy,
                                 "metadata": {"rule": f"{rule.policy}-{rule.section}",
                                              "seen_in_train": rule.shared}},
                                ensure_ascii=False) + "\n")


def main(out: Path = HERE) -> None:
    """Write docs/, test.jsonl and train.jsonl under `out` (default: beside this script)."""
    rng = random.Random(SEED)
    test, train = split(rng)
    docs = out / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for old in docs.glob("*.md"):
        old.unlink()
    for policy in POLICIES:
        (docs / f"{policy}.md").write_text(document(policy), encoding="utf-8")
    write_jsonl(out / "test.jsonl", "pl-test", test)
    write_jsonl(out / "train.jsonl", "pl-train", train)
    print(f"{len(test)} test, {len(train)} train, {len(POLICIES)} documents, "
          f"{len(RULES)} rules ({sum(r.shared for r in RULES)} shared)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
