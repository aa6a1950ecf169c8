"""The CSV importer: rows become items with stable ids; errors name file, line and column."""

from __future__ import annotations

import json

import pytest

from evalkit.data.importers import from_csv, write_jsonl
from evalkit.data.testset import Task, TestsetError, load_items


def test_text_label_csv_becomes_items_with_stable_ids(tmp_path):
    path = tmp_path / "intents.csv"
    path.write_text('text,label\n"refund me, please",refund\nlocked out,login\n')
    items = from_csv(path)
    assert items == [
        {"id": "intents-00001", "input": "refund me, please", "expected": "refund"},
        {"id": "intents-00002", "input": "locked out", "expected": "login"},
    ]
    assert from_csv(path) == items  # same file, same ids


def test_configurable_columns_and_id_column(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("uid,message,intent\na7,where is my money,refund\n")
    items = from_csv(path, text_column="message", label_column="intent", id_column="uid")
    assert items == [{"id": "a7", "input": "where is my money", "expected": "refund"}]


def test_written_jsonl_loads_as_items(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("text,label\nrefund me,refund\nlocked out,login\n")
    out = tmp_path / "test.jsonl"
    write_jsonl(from_csv(path), out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["expected"] for r in rows] == ["refund", "login"]
    task = Task(name="t", type="classification", instructions="i",
                labels={"refund": "money back", "login": "cannot sign in"})
    items = load_items(out, task=task)
    assert [it.input for it in items] == ["refund me", "locked out"]


def test_missing_column_names_file_line_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,category\nrefund me,refund\n")
    with pytest.raises(TestsetError) as info:
        from_csv(path)
    msg = str(info.value)
    assert f"{path}:1:" in msg
    assert "field 'label'" in msg
    assert "header has text, category" in msg


def test_empty_value_names_the_row_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,label\nrefund me,refund\nlocked out,\n")
    with pytest.raises(TestsetError) as info:
        from_csv(path)
    assert f"{path}:3:" in str(info.value) and "field 'label'" in str(info.value)


def test_every_empty_cell_is_named_in_one_error(tmp_path):
    """A 3,000-row export with a few blank cells used to be refused at the first, so the user
    fixed one row, ran again, and met the next; one error now lists them all (BOM, CRLF and a
    quoted newline as Excel writes them)."""
    path = tmp_path / "banking.csv"
    rows = ["text,category", "refund me,refund", ",refund", '"two\nlines",login', "locked,",
            "ok,login", " ,login"]
    path.write_bytes(("\ufeff" + "\r\n".join(rows) + "\r\n").encode("utf-8"))
    with pytest.raises(TestsetError) as info:
        from_csv(path, label_column="category")
    assert str(info.value) == (
        f"{path}:3: field 'text': empty value in 3 rows, at lines 3 (text), 6 (category), "
        f"8 (text); fill them in or delete those rows")


def test_multiline_quoted_cell_reports_the_line_the_row_ends_on(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('text,label\n"line one\nline two",refund\n" ",login\n')
    with pytest.raises(TestsetError) as info:
        from_csv(path)
    assert f"{path}:4:" in str(info.value) and "field 'text'" in str(info.value)


def test_header_only_csv_is_an_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("text,label\n")
    with pytest.raises(TestsetError) as info:
        from_csv(path)
    assert str(path) in str(info.value) and "no rows" in str(info.value)


def test_excel_utf8_bom_header_is_read(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufefftext,label\nrefund me,refund\n".encode())
    assert from_csv(path) == [{"id": "excel-00001", "input": "refund me", "expected": "refund"}]


def test_non_utf8_csv_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\nrefund me,refund\ncafé broken,bug\n".encode("latin-1"))
    with pytest.raises(TestsetError) as info:
        from_csv(path)
    assert f"{path}:3:" in str(info.value) and "UTF-8" in str(info.value)


@pytest.mark.parametrize("name,delimiter", [("excel-de.csv", ";"), ("export.tsv", "\t"),
                                             ("pipes.csv", "|")])
def test_semicolon_tab_and_pipe_delimited_files_import(tmp_path, name, delimiter):
    """Excel in many European locales saves "CSV" with semicolons and a .tsv has tabs: read
    as commas, the header was one column ('column not found; header has text;label') and a
    .tsv was parsed as JSONL ('malformed JSON')."""
    from evalkit.data import scaffold

    path = tmp_path / name
    rows = [["text", "label"]] + [[f"message {i}, with a comma", "ab"[i % 2]] for i in range(10)]
    path.write_text("\n".join(delimiter.join(r) for r in rows) + "\n", encoding="utf-8")
    assert from_csv(path)[0] == {"id": f"{path.stem}-00001", "input": "message 0, with a comma",
                                 "expected": "a"}
    d = scaffold.draft(path)
    assert d.type == "classification" and set(d.labels) == {"a", "b"}
    assert len(d.test) + len(d.train) == 10


def test_excel_rows_of_empty_cells_are_not_rows(tmp_path):
    """Excel exports a sheet's used range: trailing empty columns in the header and, below
    the data, rows that are only delimiters (cells once filled, then cleared). Such a row
    holds nothing, yet init refused the whole file with 'empty value in 2 rows'; it is
    skipped now, and a row with only some cells empty is still refused by its line."""
    path = tmp_path / "kunden.csv"
    lines = ["Text;Label;;;", '"Zeile eins\r\nZeile zwei";Lob;;;', "Gerät kaputt;Beschwerde;;;",
             ";;;;", "  ;;;;", ""]
    path.write_bytes(("\ufeff" + "\r\n".join(lines)).encode("utf-8"))
    items = from_csv(path, text_column="Text", label_column="Label")
    assert [(it["input"], it["expected"]) for it in items] == [
        ("Zeile eins\r\nZeile zwei", "Lob"), ("Gerät kaputt", "Beschwerde")]
    path.write_bytes(b"Text;Label;;\r\nok;Lob;;\r\n;Lob;;\r\n;;;\r\n")
    with pytest.raises(TestsetError) as info:
        from_csv(path, text_column="Text", label_column="Label")
    assert f"{path}:3:" in str(info.value) and "1 row," in str(info.value)


def test_an_excel_cp1252_csv_is_refused_naming_line_column_and_the_encoding(tmp_path):
    """Excel's 'CSV (Comma delimited)' on Windows writes Windows-1252. The refusal named the
    file and line only ('not valid UTF-8; save the CSV as UTF-8'): not the column, not the
    text at fault, and not what the file is, so a user could not tell which of 'CSV UTF-8'
    and the other three CSV choices to pick."""
    path = tmp_path / "kunden.csv"
    rows = ["Text;Label;;", "Kunde schreibt;Lob;;", '"zwei\r\nZeilen";Lob;;',
            "Das Gerät ist kaputt – bitte prüfen;Beschwerde;;"]
    path.write_bytes("\r\n".join(rows).encode("cp1252"))
    with pytest.raises(TestsetError) as info:
        from_csv(path, text_column="Text", label_column="Label")
    message = str(info.value)
    assert message.startswith(f"{path}:5: field 'Text': not valid UTF-8 (byte 0xe4 in "
                              f"'Das Gerät ist kaputt")
    assert "Windows-1252" in message and "CSV UTF-8" in message


def test_a_donut_style_ground_truth_is_scored_on_its_gt_parse(tmp_path):
    """CORD's `ground_truth` is a JSON string wrapping the fields in gt_parse beside the OCR
    lines: the record is gt_parse, not the wrapper."""
    import json

    from evalkit.data.importers import from_extraction_jsonl

    truth = {"gt_parse": {"menu": {"nm": "Latte", "price": "30,000"},
                          "total": {"total_price": "30,000"}},
             "meta": {"version": "2.0.0", "split": "train"},
             "valid_line": [{"words": [{"text": "Latte"}]}]}
    path = tmp_path / "cord.jsonl"
    path.write_text(json.dumps({"id": "r1", "text": "Latte 30,000 TOTAL 30,000",
                                "ground_truth": json.dumps(truth)}) + "\n")
    items = from_extraction_jsonl(path, target_key="ground_truth")
    assert items[0]["expected"] == truth["gt_parse"]


def test_a_row_with_more_cells_than_the_header_is_refused_not_shifted(tmp_path):
    """`500,hi, my card is late,card_arrival` under `id,text,category`: the unquoted comma
    made csv.DictReader read the text as "hi" and the label as " my card is late" (a new
    label, the real one dropped) without a word. Every such row is named in one error, for
    `init` (read_csv_rows) and `import-csv` (from_csv) alike; a quoted comma and a trailing
    empty cell are fine."""
    from evalkit.data.importers import read_csv_rows

    path = tmp_path / "banking.csv"
    path.write_text('id,text,category\n1,"hi, quoted",card_arrival\n2,trailing,card_arrival,\n'
                    "500,hi, my card is late,card_arrival\n3,fine,card_arrival\n"
                    "7,a,b,c,d\n")
    for read in (lambda: from_csv(path, label_column="category"), lambda: read_csv_rows(path)):
        with pytest.raises(TestsetError) as info:
            read()
        message = str(info.value)
        assert message.startswith(f"{path}:4:") and "2 rows with more cells" in message
        assert "line 4: 4 cells; line 6: 5 cells" in message
    path.write_text('id,text,category\n1,"hi, quoted",card_arrival\n2,trailing,card_arrival,\n')
    assert [it["input"] for it in from_csv(path, label_column="category")] == ["hi, quoted",
                                                                               "trailing"]


def test_a_pretty_printed_json_file_is_read_as_its_rows(tmp_path):
    """SQuAD's file saved with indent=2 was 'malformed JSON ... (column 2)' on line 1, and a
    JSON array of records 'each line must be a JSON object': a file that is one JSON value
    is now read as one (an array's elements numbered by the line each starts on), and an
    object that holds no rows says what it holds."""
    from evalkit.data.importers import read_jsonl

    squad = {"version": "v2.0", "data": [{"title": "Paris", "paragraphs": [{
        "context": "The Eiffel Tower is in Paris.",
        "qas": [{"id": "q1", "question": "Where is the tower?", "is_impossible": False,
                 "answers": [{"text": "Paris", "answer_start": 23}]},
                {"id": "q2", "question": "Who built it?", "is_impossible": True,
                 "answers": []}]}]}]}
    path = tmp_path / "dev-v2.0.json"
    path.write_text(json.dumps(squad, indent=2))
    rows = read_jsonl(path)
    assert [r["id"] for _, r in rows] == ["q1", "q2"]
    path.write_text(json.dumps(squad))  # on one line, as before
    assert [r["id"] for _, r in read_jsonl(path)] == ["q1", "q2"]
    records = [{"text": "card arrived?", "label": "card_arrival"},
               {"text": "pin change", "label": "change_pin"}]
    path = tmp_path / "records.json"
    path.write_text(json.dumps(records, indent=2))
    assert read_jsonl(path) == [(2, records[0]), (6, records[1])]
    path.write_text(json.dumps(records))
    assert [r for _, r in read_jsonl(path)] == records
    path.write_text(json.dumps([records[0], 5], indent=2))
    with pytest.raises(TestsetError, match=r"records.json:6: each element of the array"):
        read_jsonl(path)
    path = tmp_path / "clinc.json"
    path.write_text(json.dumps({"train": [["hi", "greet"]], "test": [["yo", "greet"]]},
                               indent=1))
    with pytest.raises(TestsetError, match=r"clinc.json:1: one JSON object \(keys: train, test"):
        read_jsonl(path)
    path.write_text('{"text": "a", "label": "b"}\n{"text": broken\n')
    with pytest.raises(TestsetError, match=r":2: malformed JSON"):
        read_jsonl(path)  # JSONL with a bad line is still that line's error


def test_init_keeps_a_csvs_own_ids_as_it_keeps_a_jsonls(tmp_path):
    """A CSV with an id column had its ids replaced by banking-00001, ...: a user could not
    join the results back to their rows. They are kept now (an empty cell is numbered), and
    a repeated one is refused as in JSONL."""
    from evalkit.data import scaffold

    path = tmp_path / "banking.csv"
    rows = [f"{1000 + i},text number {i} about {label},{label}"
            for i, label in enumerate(["card_arrival", "change_pin"] * 10)]
    path.write_text("id,text,category\n" + "\n".join(rows) + "\n,no id here,change_pin\n")
    d = scaffold.draft(path)
    ids = sorted(it["id"] for it in (*d.test, *d.train))
    assert ids[:3] == ["1000", "1001", "1002"] and ids[-1] == "banking-00021"
    path.write_text("id,text,category\n7,a b c,card_arrival\n7,d e f,change_pin\n"
                    + "\n".join(rows) + "\n")
    with pytest.raises(TestsetError, match=r"'7'"):
        scaffold.draft(path)
