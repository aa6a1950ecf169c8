"""`extraction`: a text in, a JSON record out; `expected` is a JSON object (fields -> values).

The rules a reviewer must check:
- **Parsing** is tolerant of real small models: the whole output as JSON, else the first
  fenced block (```json ... ```), else the first `{...}` in the text that decodes to an
  object. Anything else (no object, a JSON array, broken JSON, NaN or Infinity, which
  Python's json reads and JSON does not have) is *invalid*: json_valid 0,
  schema_valid 0, field_accuracy 0, and for the slot metrics every gold pair is missed and
  nothing is predicted (all false negatives, no false positives).
- **Empty** values are null, "", whitespace, [] and {}; an empty value and a missing key are
  the same thing.
- **Values match** after normalisation: strings case-, whitespace- and punctuation-
  insensitively ("A-12345" = "a12345"), except punctuation between two digits, which is
  the value ("12.00" is not "1200", "1/12/2023" not "11/2/2023", "5.5%" not "55%"); numbers
  as numbers (2 = 2.0 = "2", "1,234.50" = 1234.5), exactly (a 16-digit id is not rounded
  into its neighbour), but a digit string with a leading zero is text ("02134" is a
  postcode, not 2134); an amount or quantity with a currency or a unit ("$12",
  "RM 12.00", "12 kg") as that unit and its signed number ("$12" = "$12.00", not "12";
  "-RM 5" is not "RM 5"): currencies are symbols and common codes, units common ones
  (`_CURRENCY_CODES`, `_UNITS`), so a version or part number ("v1.10", "AB1.10") stays
  text; lists and objects element by element, normalised the same way, a list as a
  multiset (order free: an entity list or a receipt's lines) and an object without its
  empty members.
- **Slot metrics** (the usual span-extraction precision/recall/F1) count (field, value)
  pairs, micro-averaged over the set: an empty gold field contributes no gold pair; a
  non-empty predicted value is a predicted pair, a true positive when the gold value of that
  field matches, a false positive otherwise (a value for an empty field, a field the gold
  record does not have); an unmatched gold pair is a false negative. P = TP/(TP+FP),
  R = TP/(TP+FN), F1 = 2TP/(2TP+FP+FN); with a zero denominator (nothing predicted, nothing
  gold) the score is 1.0, since there was nothing to get wrong.
- **field_accuracy** (per item, the default primary): the share of fields, over the gold
  record's keys and the keys the prediction gives a value, whose values match (both empty
  counts as a match, so a gold null is right when the answer leaves the field out or null);
  a predicted key that is null is no field, so padding an answer with null keys does not
  raise its score; an item whose gold and predicted records are both empty scores 1.0.
- **schema_valid**: the parsed object validates against task.yaml's `json_schema` (the
  `jsonschema` library, the draft the schema's `$schema` names, else the latest); without a
  schema it equals json_valid (every object is valid against the empty schema).
"""

from __future__ import annotations

import json
import math
import re
import string
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalkit.tasks.base import (
    ItemContext,
    Metric,
    Rows,
    RunContext,
    Scaffold,
    TaskType,
    register_metric,
    register_task_type,
)

if TYPE_CHECKING:
    import numpy as np

    from evalkit.data.testset import Task

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_PUNCTUATION = frozenset(string.punctuation)
# an amount or a quantity: a sign, then a currency (a symbol, or a code such as USD or RM)
# before or after an unsigned number, or a unit or a percent sign after it, with or without a
# space ("-RM 5.00", "$12", "12 kg", "5.5%"); a letter prefix that is no currency code ("v1.10",
# "Rev 2.1", "AB1.10") is not one: those are codes, compared as text
_CURRENCY_CODES = ("usd", "eur", "gbp", "jpy", "cny", "rmb", "inr", "myr", "rm", "sgd", "aud",
                   "cad", "nzd", "chf", "hkd", "krw", "idr", "rp", "php", "thb", "vnd", "brl",
                   "mxn", "zar", "sek", "nok", "dkk", "pln", "czk", "huf", "try", "rub", "aed",
                   "sar", "qar", "kwd", "egp", "ngn", "kes", "pkr", "bdt", "lkr", "twd", "ils",
                   "kr", "rs")
_UNITS = ("kg", "g", "mg", "lb", "lbs", "oz", "km", "m", "cm", "mm", "ml", "l", "pcs", "pc",
          "pkt", "h", "hrs", "min", "s")
_SYMBOL = r"[$\u00a2-\u00a5\u20a0-\u20cf]"


def _alternation(words) -> str:
    return "|".join(sorted(words, key=len, reverse=True))


_UNIT_AMOUNT = re.compile(
    rf"(?P<sign>[+-])?\s*(?:(?P<pre>{_SYMBOL}|{_alternation(_CURRENCY_CODES)})\s*)?"
    rf"(?P<sign2>[+-])?(?P<num>\d[\d.,]*)"
    rf"(?:\s*(?P<post>{_SYMBOL}|%|{_alternation(_CURRENCY_CODES + _UNITS)}))?",
    re.IGNORECASE)
# quotes and brackets around a value, a full stop or comma after it: '"12.50"', "$12.00."
_LEADING, _TRAILING = "\"'\u201c\u201d\u2018\u2019([{", "\"'\u201c\u201d\u2018\u2019)]}.,;:!?"
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# a number with thousands separators (1,234,567) or Indian grouping (12,34,567); a comma
# anywhere else ("1,5", a decimal comma) is not dropped, which read "1,5" as 15 and scored it
# equal to a gold 15: such a value stays text, compared as text
_GROUPED = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d{1,2}(?:,\d{2})+,\d{3})(?:\.\d*)?")


# --- parsing ----------------------------------------------------------------------------------

def extract_json(output: str | None) -> dict[str, Any] | None:
    """The JSON object in a model's answer, or None when there is none (see module doc)."""
    if output is None:
        return None
    text = output.strip()
    whole = _loads(text)
    if whole is not None:
        return whole if isinstance(whole, dict) else None
    for block in _FENCE.findall(text):
        found = _loads(block.strip())
        if isinstance(found, dict):
            return found
    decoder = json.JSONDecoder(parse_constant=_not_json)
    for match in re.finditer(r"\{", text):
        try:
            found, _ = decoder.raw_decode(text, match.start())
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(found, dict):
            return found
    return None


def _loads(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_not_json)
    except (json.JSONDecodeError, ValueError):
        return None


def _not_json(name: str) -> Any:
    """NaN, Infinity and -Infinity, which Python's json reads and JSON does not have: an
    answer holding one is not valid JSON (json_valid 0), as any other parser would say."""
    raise ValueError(f"{name} is not JSON")


# --- values -----------------------------------------------------------------------------------

def is_empty(value: Any) -> bool:
    """null, "", whitespace, [] and {} are all "the text does not say"."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, (list, dict)) and not value


def normalize_value(value: Any) -> Any:
    """What a value is compared as: a float for numbers (and numeric strings), else a
    lower-cased string without punctuation (ASCII and Unicode: a model's curly quotes and
    dashes are the gold's straight ones) or repeated whitespace, after NFKC (fullwidth
    digits and letters as their plain forms); lists and objects as the
    canonical JSON of their normalised elements and members (a list as a multiset: its
    elements sorted; an object without its empty members)."""
    if isinstance(value, (list, dict)):
        return json.dumps(_canonical(value), sort_keys=True, ensure_ascii=False)
    return _scalar(value)


def _scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return _exact(value)
    if isinstance(value, str):
        stripped = unicodedata.normalize("NFKC", value).strip()  # fullwidth forms, ligatures
        core = stripped.lstrip(_LEADING).rstrip(_TRAILING).strip()
        number = _numeric(core)
        if number is not None:
            return number
        return _unit_amount(core) or " ".join(_unpunctuated(stripped.lower()).split())
    return value


def _unit_amount(text: str) -> str | None:
    """`text` as "<unit> <signed number>" if it is a number with one currency or unit
    ("$12.00" and "$12" alike, "RM 12.00", "-RM 5", "12 kg", "5.5%"), else None."""
    found = _UNIT_AMOUNT.fullmatch(text)
    if (found is None or bool(found["pre"]) == bool(found["post"])
            or (found["sign"] and found["sign2"])):
        return None  # no unit (a plain number is not this), one on both sides, two signs
    amount = _numeric(found["num"])
    if amount is None:
        return None
    sign = "-" if "-" in (found["sign"], found["sign2"]) and amount != 0 else ""
    return f"{(found['pre'] or found['post']).lower()} {sign}{amount!r}"


def _numeric(text: str) -> int | float | None:
    """`text` as a number if it is one ("12", "-0.5", "1e3", "1,234.50"), exactly; None for
    anything else, and for a digit string with a leading zero (an id, a postcode)."""
    if _GROUPED.fullmatch(text):  # "1,234.50": commas between groups of three only
        text = text.replace(",", "")
    elif not _NUMBER.fullmatch(text):
        return None
    digits = text.lstrip("+-")
    if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        return None  # "02134", "007": the zeros are part of it
    try:
        number = int(text) if digits.isdigit() else float(text)
    except ValueError:  # more digits than Python reads as an int: an id, compared as text
        return None
    if number != number or number in (math.inf, -math.inf):
        return None  # "1e400": no float holds it, so "1e401" would equal it
    return _exact(number)


def _exact(number: int | float) -> int | float:
    """A number as a float when the float is exactly it (2 and 2.0 and "2" compare and
    serialise alike), else the int itself: a 16-digit id is not rounded into another, and
    one too long for any float stays the int it is."""
    try:
        as_float = float(number)
    except OverflowError:
        return number
    return as_float if as_float == number else number


def _unpunctuated(text: str) -> str:
    """`text` without punctuation (ASCII and Unicode: curly quotes, dashes, «», 。), except
    where it stands between two digits: a decimal point, a date's or a time's separator."""
    if text.isascii() and not any(c in _PUNCTUATION for c in text):
        return text
    out = []
    for i, c in enumerate(text):
        if c in _PUNCTUATION or (not c.isascii() and unicodedata.category(c).startswith("P")):
            after = i < len(text) - 1 and text[i + 1].isdigit()
            if after and (0 < i and text[i - 1].isdigit()  # 12.00, 1/12/2023, 10:30
                          or c in "+-" and (i == 0 or text[i - 1].isspace())):  # a sign
                out.append(c)
            continue
        out.append(c)
    return "".join(out)


def _canonical(value: Any) -> Any:
    """A list's or object's elements normalised as scalar fields are, so ["Ann", "Bob"]
    matches ["bob", "ann"] as "Ann" matches "ann" (entity lists, a receipt's menu lines)."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items() if not is_empty(v)}
    if isinstance(value, list):
        return sorted((_canonical(v) for v in value),
                      key=lambda v: json.dumps(v, sort_keys=True, ensure_ascii=False))
    return _scalar(value)


def values_match(expected: Any, predicted: Any) -> bool:
    """Both empty, or both non-empty and equal after normalisation."""
    if is_empty(expected) or is_empty(predicted):
        return is_empty(expected) and is_empty(predicted)
    return normalize_value(expected) == normalize_value(predicted)


# --- metrics as plain functions ---------------------------------------------------------------

def slot_counts(expected: dict[str, Any], predicted: dict[str, Any] | None
                ) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) over one item's (field, value)
    pairs; an invalid prediction (None) misses every gold pair and predicts nothing."""
    gold = {k for k, v in expected.items() if not is_empty(v)}
    if predicted is None:
        return 0, 0, len(gold)
    guessed = {k for k, v in predicted.items() if not is_empty(v)}
    tp = sum(1 for k in guessed & gold if values_match(expected[k], predicted[k]))
    return tp, len(guessed) - tp, len(gold) - tp


def _ratio(num: float, den: float) -> float:
    return num / den if den else 1.0


def slot_prf(expected: Sequence[dict[str, Any]], predicted: Sequence[dict[str, Any] | None]
             ) -> tuple[float, float, float]:
    """Micro-averaged slot precision, recall and F1 over a set of items."""
    tp = fp = fn = 0
    for e, p in zip(expected, predicted, strict=True):
        a, b, c = slot_counts(e, p)
        tp, fp, fn = tp + a, fp + b, fn + c
    return _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn)


def field_accuracy(expected: dict[str, Any], predicted: dict[str, Any] | None) -> float:
    """Share of fields (gold keys and predicted keys) whose values match; 0 when invalid."""
    if predicted is None:
        return 0.0
    keys = set(expected) | {k for k, v in predicted.items() if not is_empty(v)}
    if not keys:
        return 1.0
    return sum(values_match(expected.get(k), predicted.get(k)) for k in keys) / len(keys)


def schema_errors(value: Any, schema: dict[str, Any]) -> list[str]:
    """Where `value` breaks `schema` ("quantity: 'two' is not of type 'integer'"), [] if
    nowhere; the messages are jsonschema's, prefixed by the failing path."""
    out = []
    for err in sorted(_validator(json.dumps(schema, sort_keys=True)).iter_errors(value),
                      key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in err.absolute_path)
        out.append(f"{where}: {err.message}" if where else err.message)
    return out


@lru_cache(maxsize=32)
def _validator(schema_json: str):
    import jsonschema  # deferred: only extraction tasks with a schema need it

    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def check_schema(schema: dict[str, Any]) -> str | None:
    """None if `schema` is a valid JSON Schema, else why not (jsonschema's message)."""
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return exc.message
    return None


# --- the task type ----------------------------------------------------------------------------

def check_expected(expected: Any, task: Task) -> None:
    """A JSON object (an empty one is legal: nothing to extract); its keys must be fields
    task.yaml declares (when it declares any), and it must satisfy the task's schema."""
    if not isinstance(expected, dict):
        raise ValueError(f"must be a JSON object of fields -> values, got {expected!r}")
    if task.fields:
        unknown = [k for k in expected if k not in task.fields]
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r}; task.yaml's fields: "
                             f"{', '.join(task.fields)}")
    if task.json_schema:
        errors = schema_errors(expected, task.json_schema)
        if errors:
            raise ValueError(f"does not match task.yaml's json_schema: {errors[0]}")


def _parse(output: str, task: Task) -> dict[str, Any] | None:
    return extract_json(output)


def strict_compatible(schema: dict[str, Any]) -> bool:
    """Whether OpenAI's strict structured outputs accept `schema` as it is: an object whose
    properties are all required and which allows no others (checked at the top level)."""
    props = schema.get("properties")
    return (schema.get("type") == "object" and isinstance(props, dict)
            and schema.get("additionalProperties") is False
            and set(schema.get("required") or ()) == set(props))


def response_format(task: Task) -> dict[str, Any]:
    """JSON through the API: the task's schema (strict where OpenAI would accept it as
    strict), else plain JSON mode. Providers that cannot send it fall back to the prompt."""
    if task.json_schema:
        name = re.sub(r"[^A-Za-z0-9_-]", "_", task.name)[:64] or "record"
        return {"type": "json_schema", "json_schema": {
            "name": name, "schema": task.json_schema,
            "strict": strict_compatible(task.json_schema)}}
    return {"type": "json_object"}


def _record(ctx: ItemContext) -> dict[str, Any]:
    return ctx.item.expected


def _json_valid(ctx: ItemContext) -> float:
    return float(ctx.parsed is not None)


def _schema_valid(ctx: ItemContext) -> float:
    if ctx.parsed is None:
        return 0.0
    if not ctx.task.json_schema:
        return 1.0
    return float(not schema_errors(ctx.parsed, ctx.task.json_schema))


def _slot_metric(which: int):
    """A per-run statistic over item indices (so the analysis can bootstrap it)."""
    def compute(ctx: RunContext):
        import numpy as np

        counts = np.array([slot_counts(e, p) for e, p in zip(ctx.expected, ctx.parsed)],
                          dtype=float).reshape(-1, 3)

        def statistic(ix: np.ndarray) -> float:
            tp, fp, fn = counts[ix].sum(axis=0)
            num, den = ((tp, tp + fp), (tp, tp + fn), (2 * tp, 2 * tp + fp + fn))[which]
            return float(num / den) if den else 1.0
        return statistic
    return compute


def fit(rows: Rows) -> float:
    """1.0 when most of the first rows' targets (target, expected, output, json, record, or
    a label key) are JSON objects or strings holding one, else 0: a first row with a null
    target read the whole set as QA, with an error about answers it never had."""
    from evalkit.data.importers import rows_record_key

    return 1.0 if rows_record_key(list(rows))[1] > 0.5 else 0.0


def read(path: Path, *, text_key: str | None = None,
         target_key: str | None = None) -> list[dict[str, Any]]:
    from evalkit.data.importers import from_extraction_jsonl

    return from_extraction_jsonl(path, text_key=text_key, target_key=target_key)


TYPE = "extraction"
register_metric(Metric("field_accuracy", "item",
                       lambda ctx: field_accuracy(_record(ctx), ctx.parsed), task_types=(TYPE,),
                       description="share of the record's fields whose values match"))
register_metric(Metric("json_valid", "item", _json_valid, task_types=(TYPE,), binary=True,
                       description="a JSON object could be read from the answer"))
register_metric(Metric("schema_valid", "item", _schema_valid, task_types=(TYPE,), binary=True,
                       description="the answer's object validates against json_schema"))
for _i, _name in enumerate(("slot_precision", "slot_recall", "slot_f1")):
    register_metric(Metric(_name, "run", _slot_metric(_i), task_types=(TYPE,),
                           description=f"micro-averaged {_name[5:]} over (field, value) pairs"))


def explain(expected: dict[str, Any], output: str, task: Task) -> str | None:
    """Why a record scored what it did: the answer is not a JSON object (and what it is
    instead), or which fields differ, each with the gold value and the answer's; None when
    every field matches."""
    if not output.strip():
        return "no answer: the reply was empty"
    record = extract_json(output)
    if record is None:
        whole = _loads(output.strip())
        what = ("a JSON array, not an object" if isinstance(whole, list)
                else f"a JSON {type(whole).__name__}, not an object" if whole is not None
                else "no JSON object could be read from it (broken JSON, single quotes, a "
                     "trailing comma, NaN?)")
        return f"not a JSON record: {what}"
    wrong = [k for k in [*expected, *(k for k in record if k not in expected)]
             if not values_match(expected.get(k), record.get(k))]
    if not wrong:
        return None

    def shown(value: Any) -> str:
        return "nothing" if is_empty(value) else json.dumps(value, ensure_ascii=False)[:80]

    parts = [f"{k}: expected {shown(expected.get(k))}, answered {shown(record.get(k))}"
             + ("" if k in expected else " (not a field of the record)") for k in wrong[:6]]
    more = f"; and {len(wrong) - 6} more" if len(wrong) > 6 else ""
    return f"{len(wrong)} field{'s' if len(wrong) != 1 else ''} wrong: " + "; ".join(parts) + more


register_task_type(TaskType(
    TYPE, check_expected=check_expected, explain=explain,
    metrics=("field_accuracy", "slot_f1", "slot_precision", "slot_recall", "json_valid",
             "schema_valid"),
    parse=_parse, response_format=response_format,
    description="a JSON record of fields -> values read from the input",
    default_output_tokens=256,  # a JSON object
    scaffold=Scaffold(fit=fit, read=read, fields=True, instructions="Extract the fields below "
                      "from the text. Reply with one JSON object.")))

__all__ = ["check_expected", "extract_json", "field_accuracy", "is_empty", "normalize_value",
           "response_format", "schema_errors", "slot_counts", "slot_prf", "strict_compatible",
           "values_match"]
