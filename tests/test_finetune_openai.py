"""Fine-tuning through an OpenAI-compatible API and registering models trained elsewhere,
against loopback servers; then the whole ladder, fine-tuned rungs included, on those models."""

from __future__ import annotations

import json
import shutil

import pytest
from openai_server import (
    FIXTURES,
    KEY,
    FakeOpenAI,
    assert_key_nowhere,
    cli,
    openai_env,
    read_jsonl,
    run_dirs_args,
)

from evalkit.data.testset import load_testset
from evalkit.providers.openai_finetune import FineTuneError, build_lines, validate
from evalkit.strategies.finetune import LeakageError, load_record
from evalkit.strategies.request import Request

INTENTS = FIXTURES / "tiny-intents"
LADDER = "prompt-only,few-shot,rag,fine-tuned,rag+fine-tuned"


_env = openai_env  # autouse: the test key in the environment, no OPENAI_BASE_URL
_dirs = run_dirs_args


def test_training_lines_are_the_prompt_only_messages_plus_the_reference():
    testset = load_testset(INTENTS)
    lines = build_lines(testset)
    assert len(lines) == len(testset.train) == 12
    for item, line in zip(testset.train, lines, strict=True):
        prompt = Request(task_type="classification", instructions=testset.task.instructions,
                         input=item.input, labels=tuple(testset.task.labels.items()))
        assert line["messages"][:-1] == prompt.messages()
        assert line["messages"][-1] == {"role": "assistant", "content": item.expected}


def test_validation_needs_ten_examples_and_non_empty_turns():
    lines = build_lines(load_testset(INTENTS))
    with pytest.raises(FineTuneError, match="9 training examples; .* at least 10"):
        validate(lines[:9], "train.jsonl")
    lines[3]["messages"][-1]["content"] = " "
    with pytest.raises(FineTuneError, match="train.jsonl: line 4: field 'content' is empty"):
        validate(lines, "train.jsonl")


def test_leaking_test_item_is_refused_before_any_upload(tmp_path):
    leaky = tmp_path / "leaky"
    shutil.copytree(INTENTS, leaky)
    first_test = (leaky / "test.jsonl").read_text().splitlines()[0]
    row = json.loads(first_test) | {"id": "tr-leak"}
    with (leaky / "train.jsonl").open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    with FakeOpenAI(api_key=KEY) as server:
        result = cli("finetune", leaky, "--provider", "openai", "--base-url", server.base_url,
                     "--finetune-dir", tmp_path / "ft", ok=False)
        assert server.requests == []
    assert result.exit_code == 2 and "leak" in result.output
    with pytest.raises(LeakageError):
        from evalkit.providers.openai_finetune import prepare
        from evalkit.providers.pricing import PriceBook
        prepare(load_testset(leaky), base_model="gpt-4o-mini-2024-07-18", prices=PriceBook())


def test_job_flow_records_model_tokens_cost_and_the_ladder_runs_on_it(tmp_path):
    """Done when: the whole ladder, fine-tuned rungs included, against the test server."""
    with FakeOpenAI(api_key=KEY, polls_per_stage=2, fault_rate=0.1,
                    fault_retry_after=0.01) as server:
        out = cli("finetune", INTENTS, "--provider", "openai", "--base-url", server.base_url,
                  "--finetune-dir", tmp_path / "finetunes", "--poll-interval", "0.01",
                  "--epochs", "2").output
        record = load_record(tmp_path / "finetunes", "tiny-intents-openai")
        job = server.jobs[record.job_id]
        uploaded = [json.loads(x) for x in server.files[job.training_file].decode().splitlines()]
        run = cli("run", INTENTS, "--provider", "openai", "--base-url", server.base_url,
                  "--variants", LADDER, *_dirs(tmp_path)).output
        ft_calls = [r for r in server.chat_calls(200) if r.model == record.fine_tuned_model]
        assert server.answered_twice() == []
    assert "estimated training cost $" in out and "event: Job entered running" in out
    assert uploaded == build_lines(load_testset(INTENTS))
    assert record.status == "succeeded" and job.n_epochs == 2
    assert record.fine_tuned_model == f"ft:gpt-4o-mini-2024-07-18:evalkit::{record.job_id}"
    assert record.trained_tokens == server.trained_tokens(job) > 0
    # $3.00 per million trained tokens for gpt-4o-mini-2024-07-18
    assert record.training_cost_usd == pytest.approx(record.trained_tokens * 3.0 / 1e6)
    preds = read_jsonl((tmp_path / "reports" / "latest").resolve() / "predictions.jsonl")
    assert len(preds) == 40 and all(p["error_class"] is None for p in preds), run
    ft_preds = [p for p in preds if p["variant"] in ("fine-tuned", "rag+fine-tuned")]
    assert {p["model"] for p in ft_preds} == {record.fine_tuned_model}
    assert len(ft_calls) == 16 and all(p["cost_usd"] > 0 for p in ft_preds)
    setup = json.loads(((tmp_path / "reports" / "latest").resolve() / "run.json")
                       .read_text())["setup"]
    assert setup["fine_tune"]["training_cost_usd"] == record.training_cost_usd
    assert assert_key_nowhere(tmp_path) >= 5


def test_status_resumes_polling_from_the_record(tmp_path):
    from evalkit.providers.openai_finetune import client, prepare, start
    from evalkit.providers.pricing import PriceBook

    with FakeOpenAI(api_key=KEY, polls_per_stage=1) as server:
        testset = load_testset(INTENTS)
        training = prepare(testset, base_model="gpt-4o-mini-2024-07-18", prices=PriceBook())
        start(testset, tmp_path / "ft", sdk=client(server.base_url), base_model=
              "gpt-4o-mini-2024-07-18", training=training, base_url=server.base_url)
        # the process that started the job died here; a new one picks it up from the record
        pending = load_record(tmp_path / "ft", "tiny-intents-openai")
        out = cli("finetune", "status", "tiny-intents-openai", "--finetune-dir", tmp_path / "ft",
                  "--poll-interval", "0.01").output
    assert pending.status == "validating_files" and not pending.fine_tuned_model
    done = load_record(tmp_path / "ft", "tiny-intents-openai")
    assert done.status == "succeeded" and done.fine_tuned_model and done.trained_tokens
    assert "status: succeeded" in out
    assert_key_nowhere(tmp_path)


def test_register_a_model_served_by_a_second_server(tmp_path):
    config = tmp_path / "experiment.yaml"
    config.write_text("pricing:\n  models:\n    acme-intents-lora:\n"
                      "      {usd_per_gpu_hour: 1.8, tokens_per_second: 500}\n")
    with FakeOpenAI(api_key=KEY, served_models=("gpt-4o-mini",)) as base, \
            FakeOpenAI(api_key=KEY, served_models=("acme-intents-lora",)) as lora:
        out = cli("finetune", "register", "tiny-intents-openai", "--model", "acme-intents-lora",
                  "--base-url", lora.base_url, "--gpu-hours", "0.5", "--usd-per-hour", "2.0",
                  "--base-model", "Qwen2.5-1.5B-Instruct", "--testset", INTENTS,
                  "--finetune-dir", tmp_path / "finetunes").output
        cli("run", INTENTS, "--provider", "openai", "--base-url", base.base_url,
            "--variants", "prompt-only,fine-tuned", "--config", config, *_dirs(tmp_path))
        base_models = {r.model for r in base.chat_calls()}
        lora_models = {r.model for r in lora.chat_calls()}
        lora_200 = lora.chat_calls(200)
    record = load_record(tmp_path / "finetunes", "tiny-intents-openai")
    assert record.training_cost_usd == pytest.approx(1.0) and record.job_id is None
    assert record.base_url == lora.base_url and record.trained_examples == 12
    assert "training cost $1.0000" in out
    assert base_models == {"gpt-4o-mini"} and lora_models == {"acme-intents-lora"}
    preds = read_jsonl((tmp_path / "reports" / "latest").resolve() / "predictions.jsonl")
    assert all(p["error_class"] is None for p in preds) and len(preds) == 16
    ft = [p for p in preds if p["variant"] == "fine-tuned"]
    assert len(lora_200) == 8 and all(p["model"] == "acme-intents-lora" for p in ft)
    # GPU-hour price: $1.8/h at 500 tok/s = $1 per million tokens
    assert all(p["cost_usd"] == pytest.approx((p["input_tokens"] + p["output_tokens"]) / 1e6)
               for p in ft)
    assert_key_nowhere(tmp_path)


def test_register_refuses_half_a_gpu_price(tmp_path):
    result = cli("finetune", "register", "x", "--model", "m", "--gpu-hours", "2",
                 "--finetune-dir", tmp_path, ok=False)
    assert result.exit_code == 2 and "--usd-per-hour" in result.output


# --- resumability: a re-run never pays twice, a torn write never loses the job -----------------

def _train(server, testset_dir, ft_dir, *extra, ok=True):
    return cli("finetune", testset_dir, "--provider", "openai", "--base-url", server.base_url,
               "--finetune-dir", ft_dir, "--poll-interval", "0.01", *extra, ok=ok)


def test_rerun_while_the_job_runs_refuses_then_does_nothing_once_done(tmp_path):
    from evalkit.providers.openai_finetune import client, prepare, start
    from evalkit.providers.pricing import PriceBook

    ft_dir = tmp_path / "ft"
    with FakeOpenAI(api_key=KEY, polls_per_stage=1) as server:
        testset = load_testset(INTENTS)
        training = prepare(testset, base_model="gpt-4o-mini-2024-07-18", prices=PriceBook())
        first = start(testset, ft_dir, sdk=client(server.base_url),
                      base_model="gpt-4o-mini-2024-07-18", training=training,
                      base_url=server.base_url)
        # Ctrl-C while polling; the user runs the same command again
        refused = _train(server, INTENTS, ft_dir, ok=False)
        after_refusal = (len(server.files), len(server.jobs), load_record(ft_dir, first.name))
        cli("finetune", "status", first.name, "--finetune-dir", ft_dir, "--poll-interval", "0.01")
        again = _train(server, INTENTS, ft_dir)
        after_again = (len(server.files), len(server.jobs))
        forced = _train(server, INTENTS, ft_dir, "--force")
        jobs = sorted(server.jobs)
    assert refused.exit_code == 2, refused.output
    assert f"job {first.job_id} is still validating_files" in refused.output
    assert "evalkit finetune status tiny-intents-openai" in refused.output
    assert "--force" in refused.output and "estimated training cost" not in refused.output
    assert after_refusal == (1, 1, first)  # nothing uploaded, record untouched
    assert "nothing to do" in again.output and after_again == (1, 1)
    assert f"model ft:gpt-4o-mini-2024-07-18:evalkit::{first.job_id}" in again.output
    assert "--force: replacing" in forced.output and len(jobs) == 2
    latest = load_record(ft_dir, first.name)
    assert latest.job_id == jobs[-1] != first.job_id and latest.status == "succeeded"


def test_a_kill_while_the_job_is_being_created_is_healed_not_paid_twice(tmp_path):
    """Killed after the server made the job but before its id reached the record (the create
    call takes a round trip; Ctrl-C, SIGKILL or a lost response land there): the same command
    run again finds the job over the file it uploaded and follows it, instead of uploading
    and paying for a second job."""
    from evalkit.providers.openai_finetune import client, prepare, start
    from evalkit.providers.pricing import PriceBook

    ft_dir = tmp_path / "ft"
    with FakeOpenAI(api_key=KEY, polls_per_stage=1) as server:
        testset = load_testset(INTENTS)
        training = prepare(testset, base_model="gpt-4o-mini-2024-07-18", prices=PriceBook())
        sdk = client(server.base_url)
        create = sdk.fine_tuning.jobs.create

        def killed(**kwargs):
            create(**kwargs)  # the server has the job ...
            raise KeyboardInterrupt  # ... and this process never writes its id down

        sdk.fine_tuning.jobs.create = killed
        with pytest.raises(KeyboardInterrupt):
            start(testset, ft_dir, sdk=sdk, base_model="gpt-4o-mini-2024-07-18",
                  training=training, base_url=server.base_url)
        (made,) = server.jobs
        out = _train(server, INTENTS, ft_dir).output
        paid = (len(server.files), sorted(server.jobs))
    assert paid == (1, [made]), out  # no second upload, no second job
    record = load_record(ft_dir, "tiny-intents-openai")
    assert record.job_id == made and record.status == "succeeded"
    assert made in out and record.fine_tuned_model.endswith(made)


def test_a_create_whose_answer_times_out_is_not_retried_into_a_second_job(tmp_path):
    """The server makes the job but its answer is lost to the client's timeout: the SDK's
    own retry would post the create again and pay for two jobs; evalkit's finds the one
    made over its upload and takes it."""
    from evalkit.providers.openai_finetune import client, prepare, start
    from evalkit.providers.pricing import PriceBook

    with FakeOpenAI(api_key=KEY, slow_job_creates=(1, 1.0)) as server:
        testset = load_testset(INTENTS)
        training = prepare(testset, base_model="gpt-4o-mini-2024-07-18", prices=PriceBook())
        sdk = client(server.base_url, max_retries=2, timeout_s=0.3)
        record = start(testset, tmp_path / "ft", sdk=sdk, base_model="gpt-4o-mini-2024-07-18",
                       training=training, base_url=server.base_url)
        jobs = sorted(server.jobs)
    assert len(jobs) == 1 and record.job_id == jobs[0]
    assert sdk.max_retries == 2  # the client is left as it was


def test_rerun_after_the_train_split_changed_starts_a_new_job(tmp_path):
    ts_dir = tmp_path / "intents"
    shutil.copytree(INTENTS, ts_dir)
    ft_dir = tmp_path / "ft"
    with FakeOpenAI(api_key=KEY, polls_per_stage=1) as server:
        _train(server, ts_dir, ft_dir)
        first = load_record(ft_dir, "tiny-intents-openai")
        with (ts_dir / "train.jsonl").open("a") as fh:
            fh.write(json.dumps({"id": "tr-13", "input": "two factor code never comes",
                                 "expected": "login"}) + "\n")
        out = _train(server, ts_dir, ft_dir).output
        n_jobs = len(server.jobs)
    second = load_record(ft_dir, "tiny-intents-openai")
    assert n_jobs == 2 and f"replacing {first.fine_tuned_model}" in out
    assert "a different train split" in out
    assert second.trained_examples == 13 and second.train_hash != first.train_hash


def test_failed_job_may_be_retried_without_force(tmp_path):
    from dataclasses import replace

    from evalkit.strategies.finetune import save_record

    ft_dir = tmp_path / "ft"
    with FakeOpenAI(api_key=KEY, polls_per_stage=1) as server:
        _train(server, INTENTS, ft_dir)
        failed = replace(load_record(ft_dir, "tiny-intents-openai"), status="failed",
                         fine_tuned_model="")
        save_record(ft_dir, failed)
        out = _train(server, INTENTS, ft_dir).output
        n_jobs = len(server.jobs)
    assert n_jobs == 2 and f"job {failed.job_id} failed; starting a new one" in out
    assert load_record(ft_dir, "tiny-intents-openai").status == "succeeded"


_TORN_WRITE = """
import resource, signal, sys
from dataclasses import replace
from pathlib import Path
from evalkit.strategies.finetune import load_record, save_record

ft_dir = Path(sys.argv[1])
old = load_record(ft_dir, "job")
new = replace(old, status="running", fine_tuned_model="x" * 20000)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full disk: writes past 4 KiB fail
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    save_record(ft_dir, new)
except OSError as exc:
    print("write failed:", exc.errno)
"""


def test_a_write_that_fails_midway_leaves_the_old_record_whole(tmp_path):
    """A full disk (or a kill) during a poll's rewrite must not lose the only job pointer."""
    import subprocess
    import sys

    from evalkit.strategies.finetune import FineTuneRecord, save_record

    pytest.importorskip("resource")
    old = FineTuneRecord(name="job", provider="openai", base_model="gpt-4o-mini-2024-07-18",
                         fine_tuned_model="", status="queued", train_hash="abc",
                         trained_examples=12, job_id="ftjob-0001")
    save_record(tmp_path, old)
    done = subprocess.run([sys.executable, "-c", _TORN_WRITE, str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "write failed: 27" in done.stdout  # EFBIG: the write really was cut short
    assert load_record(tmp_path, "job") == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.json"]  # no temp file left


def test_save_record_replaces_whole_and_leaves_no_temp_files(tmp_path):
    from dataclasses import replace

    from evalkit.strategies.finetune import FineTuneRecord, save_record

    record = FineTuneRecord(name="job", provider="openai", base_model="b", fine_tuned_model="",
                            status="queued", train_hash="abc", trained_examples=12,
                            job_id="ftjob-0001")
    for status in ("queued", "running", "succeeded"):
        save_record(tmp_path, replace(record, status=status))
    assert load_record(tmp_path, "job").status == "succeeded"
    assert [p.name for p in tmp_path.iterdir()] == ["job.json"]


# --- a record's train hash against the train split a run uses ----------------------------------

def test_check_record_for_warns_on_a_changed_or_missing_train_hash(tmp_path):
    from dataclasses import replace

    from evalkit.providers.openai_finetune import register
    from evalkit.strategies.finetune import check_record_for, train_hash

    testset = load_testset(INTENTS)
    record = register(tmp_path, "tiny-intents-openai", model="acme-lora", testset=testset)
    assert record.train_hash == train_hash(testset) != ""
    assert check_record_for(testset, record) == []

    changed = replace(record, train_hash="0123456789abcdef")
    [warning] = check_record_for(testset, changed, where="finetunes/tiny-intents-openai.json")
    assert warning.startswith("finetunes/tiny-intents-openai.json: the train split of "
                              "tiny-intents changed since acme-lora was trained")
    assert "0123456789ab" in warning and train_hash(testset)[:12] in warning

    unhashed = register(tmp_path, "bare", model="acme-lora")  # registered without --testset
    [warning] = check_record_for(testset, unhashed)
    assert warning.startswith("fine-tune bare: no train hash recorded for acme-lora")
    assert "cannot be checked" in warning and "--testset" in warning


def test_register_with_a_leaking_testset_is_refused_unless_allowed(tmp_path):
    leaky = tmp_path / "leaky"
    shutil.copytree(INTENTS, leaky)
    first_test = json.loads((leaky / "test.jsonl").read_text().splitlines()[0])
    with (leaky / "train.jsonl").open("a") as fh:
        fh.write(json.dumps(first_test | {"id": "tr-leak"}) + "\n")
    args = ("finetune", "register", "leaky-openai", "--model", "acme-lora", "--testset", leaky,
            "--finetune-dir", tmp_path / "ft")
    refused = cli(*args, ok=False)
    assert refused.exit_code == 2 and "leak into the training data" in refused.output
    assert "tr-leak" in refused.output and not (tmp_path / "ft").exists()
    allowed = cli(*args, "--allow-leakage")
    assert "leaky-openai: succeeded, model acme-lora" in allowed.output
    assert load_record(tmp_path / "ft", "leaky-openai").trained_examples == 13


def test_register_will_not_overwrite_a_job_in_progress(tmp_path):
    from evalkit.strategies.finetune import FineTuneRecord, save_record

    running = FineTuneRecord(name="tiny-intents-openai", provider="openai",
                             base_model="gpt-4o-mini-2024-07-18", fine_tuned_model="",
                             status="running", train_hash="abc", trained_examples=12,
                             job_id="ftjob-0007")
    save_record(tmp_path, running)
    args = ("finetune", "register", "tiny-intents-openai", "--model", "acme-lora",
            "--finetune-dir", tmp_path)
    refused = cli(*args, ok=False)
    assert refused.exit_code == 2 and "job ftjob-0007 is still running" in refused.output
    assert load_record(tmp_path, "tiny-intents-openai") == running
    cli(*args, "--force")
    assert load_record(tmp_path, "tiny-intents-openai").fine_tuned_model == "acme-lora"
