"""Generate the ticket-extraction test set (seeded: the same files on every run).

    python testsets/ticket-extraction/generate.py      # rewrites test.jsonl and train.jsonl

Each ticket is a support e-mail to Kestrel & Pine, a fictional home-and-outdoor shop, built
from sentence templates written for evalkit (none copied from any dataset): a greeting, the
problem with the product, the order number, when it was ordered, how many, what the customer
wants, and where to reach them, in shuffled order, with paraphrases and with distractors a
rule cannot tell apart from the answer by its shape alone: an earlier order's number, the
delivery date beside the order date, a second product the customer is happy with, a price or
a duration beside the quantity, the shop's own address beside the customer's, and a refund
the customer says they do *not* want. Some fields are absent from a ticket (null).
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).parent
SEED = 20261202
N_TEST, N_TRAIN = 320, 560

PRODUCTS = [
    "Aurora Desk Lamp", "Fjord Backpack", "Cinder Cast-Iron Pan", "Mistral Ceiling Fan",
    "Juniper Throw Blanket", "Halcyon Kettle", "Basalt Cutting Board", "Lumen Reading Light",
    "Orchard Juicer", "Tundra Sleeping Bag", "Sable Office Chair", "Harbor Rain Jacket",
    "Ember Space Heater", "Willow Plant Stand", "Quill Fountain Pen", "Pebble Speaker",
    "Cascade Water Filter", "Summit Trekking Poles", "Marlow Coffee Grinder", "Vesper Wall Clock",
]
ACTIONS = ["refund", "replacement", "cancel_order", "return_label", "order_status"]
FIRST = ["Maya", "Tom", "Priya", "Lukas", "Ana", "Jonas", "Chloe", "Omar", "Ines", "Kenji",
         "Sofia", "Dev", "Hannah", "Mateo", "Grace", "Felix", "Leila", "Noah", "Aoife", "Ravi",
         "Elena", "Sam", "Yusuf", "Clara", "Ben", "Mira", "Pavel", "Zoe", "Idris", "Lena"]
LAST = ["Okafor", "Lindqvist", "Sharma", "Becker", "Moreau", "Tanaka", "Silva", "Novak",
        "Haddad", "Walsh", "Kowalski", "Reyes", "Brennan", "Nguyen", "Fischer", "Ortega",
        "Costa", "Ivanova", "Murphy", "Schmidt"]
DOMAINS = ["mailbox.example", "inbox.example", "post.example", "home.example", "fastmail.example"]
SHOP_EMAILS = ["help@kestrelpine.example", "orders@kestrelpine.example",
               "returns@kestrelpine.example"]
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]

GREETINGS = ["Hi,", "Hello there,", "Dear Kestrel & Pine team,", "Hey,", "Good morning,",
             "To whom it may concern,", "Hi support,", "", "", "Hello,"]
SIGNOFFS = ["Thanks,", "Regards,", "Cheers,", "Best,", "Thank you,", "Kind regards,",
            "Many thanks,", "--"]
PROBLEMS = [
    "the {p} I got is faulty", "my {p} stopped working after two days",
    "the {p} arrived with a cracked part", "I received the {p} but it's the wrong colour",
    "the {p} is not what the listing showed", "my {p} makes a grinding noise",
    "the {p} came damaged in the box", "there is a problem with the {p} I bought",
    "the {p} does not work at all", "the {p} I ordered is missing a piece",
    "I changed my mind about the {p}", "the {p} is much smaller than I expected",
]
ACTION_PHRASES = {
    "refund": ["I would like a refund", "please refund me", "I want my money back",
               "could you reimburse the full amount", "please put the money back on my card",
               "I'd like the charge reversed", "can I get my money returned"],
    "replacement": ["please send a replacement", "could you ship me a new one",
                    "I'd like a working unit sent out", "please swap it for one that works",
                    "send another one please", "I just want a new one that isn't broken",
                    "can you exchange it for an undamaged unit"],
    "cancel_order": ["please cancel the order", "I need to cancel this purchase",
                     "stop the order before it ships", "call the order off, I no longer need it",
                     "please void the purchase", "don't send it, I'd like to cancel",
                     "kill the order if it hasn't left yet"],
    "return_label": ["I need a return label", "how do I send it back",
                     "please email me a prepaid label to send it back",
                     "I want to return it", "can I post it back to you",
                     "what's the address for returns, I'd like to ship it back",
                     "send me whatever I need to return the item"],
    "order_status": ["where is my order", "it still hasn't arrived, any update",
                     "can you tell me when it will be delivered",
                     "the tracking hasn't moved in a week", "has it even been shipped yet",
                     "I'm still waiting for the parcel", "is the package lost"],
}
NOT_REFUND = ["I don't want a refund, ", "no need for a refund - ", "a refund won't help me, "]
NO_ACTION = ["I just wanted to let you know.", "Not sure what the options are.",
             "Just flagging it for your team."]


class Writer:
    """Draws phrasings; for the train split the last phrasing of every list is held back, so
    the test split has wordings no training ticket shows (a tagger must generalise)."""

    def __init__(self, rng: random.Random, *, held_out: bool):
        self.rng, self.held_out = rng, held_out

    def choice(self, options):
        options = list(options)
        if not self.held_out and len(options) > 2:
            options = options[:-1]
        return self.rng.choice(options)

    def __getattr__(self, name):  # random, randint, shuffle, ... from the generator
        return getattr(self.rng, name)


def fmt_date(d: date, rng: Writer) -> str:
    style = rng.randrange(5)
    if style == 0:
        return d.isoformat()
    if style == 1:
        return f"{d.day:02d}/{d.month:02d}/{d.year}"
    if style == 2:
        return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"
    if style == 3:
        return f"{d.day} {MONTHS[d.month - 1]} {d.year}"
    return f"{MONTHS[d.month - 1][:3]} {d.day} {d.year}"


def fmt_order(number: str, rng: Writer) -> str:
    return rng.choice([f"KP-{number}", f"KP-{number}", f"kp-{number}", f"KP{number}",
                       f"#KP-{number}"])


def order_sentence(oid: str, rng: Writer) -> str:
    return rng.choice([
        "My order number is {o}.", "Order {o}.", "This is about order {o}.",
        "The order was {o}.", "Ref: {o}", "It was order {o} if that helps.",
        "(order no. {o})", "Order # {o} on my account.", "I'm writing about {o}.",
    ]).format(o=oid)


def date_sentence(d: str, rng: Writer) -> str:
    return rng.choice([
        "I ordered it on {d}.", "I placed the order on {d}.", "Bought it {d}.",
        "The purchase was made on {d}.", "Ordered {d}.", "I put the order in on {d}.",
        "It was ordered back on {d}.",
    ]).format(d=d)


def quantity_sentence(q: int, product: str, rng: Writer) -> str:
    word = NUMBER_WORDS[q]
    return rng.choice([
        f"I bought {q} of them.", f"I ordered {word} units.", f"There were {word} in the order.",
        f"Quantity was {q}.", f"All {word} of them have the same issue.",
        f"I got {q}x {product}.", f"We ordered {word} for the office.",
    ])


def distractors(fields: dict, rng: Writer, *, product: str) -> list[str]:
    """Sentences with values of the right shape that are not the answer."""
    out = []
    if rng.random() < 0.3:
        out.append(rng.choice([
            "My earlier order KP-{n} was fine.",
            "(Not to be confused with KP-{n}, which arrived ok.)",
            "I had a similar issue with KP-{n} last year.",
        ]).format(n=rng.randint(100000, 999999)))
    if rng.random() < 0.35:
        when = date(2026, 1, 1) + timedelta(days=rng.randint(0, 300))
        out.append(rng.choice([
            "It was delivered on {d}.", "The parcel showed up {d}.",
            "I first contacted you on {d}.", "The courier came on {d}.",
        ]).format(d=fmt_date(when, rng)))
    if rng.random() < 0.3:
        other = rng.rng.choice([p for p in PRODUCTS if p != product])
        out.append(rng.choice([
            "The {o} I bought from you is great, by the way.",
            "I also have your {o} and love it.",
            "(The {o} in the same box was fine.)",
        ]).format(o=other))
    if rng.random() < 0.35:
        out.append(rng.choice([
            "It cost ${a}.", "I paid {a} dollars.", "That's ${a} I'd rather not lose.",
            "I've been waiting {w} days now.", "I've used it for {w} weeks.",
            "I gave it {s} stars on the site.",
        ]).format(a=rng.randint(12, 240), w=rng.randint(2, 9), s=rng.randint(1, 3)))
    if rng.random() < 0.2:
        out.append(rng.choice([
            "I already wrote to {s} but heard nothing.", "I cc'd {s} as well.",
            "Your site told me to contact {s}.",
        ]).format(s=rng.choice(SHOP_EMAILS)))
    if rng.random() < 0.15:
        out.append(f"Invoice INV-2026-{rng.randint(100, 999)} is attached.")
    return out


def ticket(rng: Writer) -> tuple[str, dict]:
    product = rng.rng.choice(PRODUCTS)  # products, actions and values: every one in both splits
    number = str(rng.randint(100000, 999999))
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    ordered = date(2026, 1, 1) + timedelta(days=rng.randint(0, 300))
    record = {
        "order_id": f"KP-{number}" if rng.random() < 0.85 else None,
        "product": product,
        "requested_action": rng.rng.choice(ACTIONS) if rng.random() < 0.93 else None,
        "order_date": ordered.isoformat() if rng.random() < 0.7 else None,
        "customer_email": None,
        "quantity": rng.rng.choice([1, 1, 2, 2, 3, 4, 5, 6]) if rng.random() < 0.55 else None,
    }
    if rng.random() < 0.55:
        first, last = name.lower().split()
        user = rng.choice([f"{first}.{last}", f"{first}{last[0]}", f"{first}_{last}",
                           f"{first[0]}{last}{rng.randint(1, 99)}"])
        record["customer_email"] = f"{user}@{rng.choice(DOMAINS)}"
    mention = product if rng.random() < 0.75 else product.lower()
    if rng.random() < 0.2:
        mention = f"{product.split()[0]} {product.split()[-1].lower()}"
    problem = rng.choice(PROBLEMS).format(p=mention)
    body = [problem[0].upper() + problem[1:] + "."]
    if record["order_id"]:
        body.append(order_sentence(fmt_order(number, rng), rng))
    elif rng.random() < 0.5:
        body.append(rng.choice(["I can't find the order number, sorry.",
                                "I don't have the order number to hand."]))
    if record["order_date"]:
        body.append(date_sentence(fmt_date(ordered, rng), rng))
    if record["quantity"]:
        body.append(quantity_sentence(record["quantity"], product, rng))
    action = record["requested_action"]
    if action:
        phrase = rng.choice(ACTION_PHRASES[action])
        if action != "refund" and rng.random() < 0.2:
            phrase = rng.choice(NOT_REFUND) + phrase
        body.append(phrase[0].upper() + phrase[1:] + rng.choice([".", "!", "?", "."]))
    else:
        body.append(rng.choice(NO_ACTION))
    body += distractors(record, rng, product=product)
    head, rest = body[:1], body[1:]
    rng.shuffle(rest)
    body = head + rest if rng.random() < 0.7 else rest[:1] + head + rest[1:]
    lines = [g for g in [rng.choice(GREETINGS)] if g]
    lines.append(" ".join(body))
    if record["customer_email"]:
        lines.append(rng.choice(["You can reach me at {e}.", "Reply to {e} please.",
                                 "My email is {e}.", "{n} <{e}>", "Contact: {e}"]).format(
            e=record["customer_email"], n=name))
    lines.append(f"{rng.choice(SIGNOFFS)} {name.split()[0] if rng.random() < 0.5 else name}")
    return "\n".join(lines), record


def main(out: Path = HERE) -> None:
    """Write test.jsonl and train.jsonl into `out` (the set's folder by default)."""
    rng = random.Random(SEED)
    seen: set[str] = set()
    splits: dict[str, list] = {"test": [], "train": []}
    for split, n in (("test", N_TEST), ("train", N_TRAIN)):
        writer = Writer(rng, held_out=split == "test")
        while len(splits[split]) < n:
            text, record = ticket(writer)
            if text not in seen:
                seen.add(text)
                splits[split].append((text, record))
    for name, part, prefix in (("test.jsonl", splits["test"], "te"),
                               ("train.jsonl", splits["train"], "tr")):
        with (out / name).open("w", encoding="utf-8") as fh:
            for i, (text, record) in enumerate(part, start=1):
                fh.write(json.dumps({"id": f"{prefix}-{i:04d}", "input": text,
                                     "expected": record}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
