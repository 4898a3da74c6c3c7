"""`python -m core.bench --quick --json` end to end: the report's keys, and that agreement was checked."""

import sys

import pytest
from conftest import assert_user_error, run_cli_process

from core.bench.models import CONFIGS, GROUPS, quick
from core.bench.timing import measure

SIDE_KEYS = {"train_tokens_per_s", "infer_tokens_per_s", "peak_rss_mb", "generation_ms_per_poem"}


@pytest.fixture(scope="module")
def report():
    """The subprocess smoke test of `python -m core.bench`, on one configuration: the bench and its two
    memory children, three processes that import torch (all three configurations took seven). The other
    configurations' agreement is checked in process below."""
    return run_cli_process(
        "bench", "--quick", "--json", "--repeats", "1", "--config", "tang300", timeout=600
    ).json()


@pytest.mark.slow
def test_report_has_the_contract_keys(report):
    for side in ("ours", "reference"):
        assert set(report[side]) >= SIDE_KEYS
        assert report[side]["train_tokens_per_s"] > 0
        assert report[side]["peak_rss_mb"] > report[side]["baseline_rss_mb"] > 0
    assert report["train_ratio"] == pytest.approx(
        report["ours"]["train_tokens_per_s"] / report["reference"]["train_tokens_per_s"]
    )
    for key in ("infer_ratio", "recurrent_train_ratio", "generation_ratio"):
        assert report[key] > 0
    assert report["torch"] and report["threads"] == 1


@pytest.mark.slow
def test_report_says_how_our_loops_and_memory_ran(report):
    """This machine builds the compiled loops, and the bench lets malloc keep freed memory as training
    does: the figures are those of what users run."""
    assert report["lstm_loops"] == "compiled"
    assert report["malloc_keeps_freed_memory"] is sys.platform.startswith("linux")


@pytest.mark.slow
def test_the_configuration_was_checked_for_agreement(report):
    assert set(report["configs"]) == {"tang300"} and report["main_config"] == "tang300"
    agreement = report["configs"]["tang300"]["agreement"]
    assert agreement["passed"] and agreement["max_logit_error"] <= 1e-4, agreement
    assert report["configs"]["tang300"]["tokens_per_unit"] > 0
    assert report["agreement_passed"]


def test_a_plain_run_measures_every_configuration():
    from core.bench.__main__ import build_parser

    assert GROUPS[build_parser().parse_args([]).config] == list(CONFIGS)
    assert set(CONFIGS) == {"poem", "poem-1layer", "tang300"}


@pytest.mark.parametrize("name", ["poem", "poem-1layer"])
def test_every_configuration_agrees_with_torch(name):
    """What the bench measures for each configuration (--quick sizes, in this process: agreement and the
    figures do not depend on the malloc settings the command adds)."""
    result = measure(quick(CONFIGS[name]), repeats=1, device="cpu")
    agreement = result["agreement"]
    assert agreement["passed"], (name, agreement)
    assert agreement["max_logit_error"] <= 1e-4
    assert result["tokens_per_unit"] > 0
    assert result["train_ratio"] > 0 and result["infer_ratio"] > 0


def test_bad_flag_is_a_one_line_error(cli):
    assert_user_error(cli("bench", "--quick", "--repeats", "0"), "--repeats")


def test_bf16_precision_runs_both_sides_under_autocast_where_the_machine_has_bf16(cli):
    """Both sides under a bfloat16 autocast where the CPU computes bf16 natively (measured in this process,
    as the other configurations are: the subprocess smoke test above covers the command's own machinery);
    elsewhere nn.LSTM's oneDNN kernel refuses bf16, and the command says so in one line (exit 2, refused
    before it measures anything)."""
    import torch

    from core.model import resolve_precision

    argv = ["--quick", "--json", "--repeats", "1", "--config", "tang300", "--precision", "bf16"]
    native = resolve_precision("auto", torch.device("cpu")) == "bf16"
    if not native:
        assert_user_error(cli("bench", *argv), "no bfloat16")
        return
    result = measure(quick(CONFIGS["tang300"]), repeats=1, device="cpu", precision="bf16")
    assert result["precision"] == "bf16" and result["agreement"]["passed"], result["agreement"]
    assert result["train_ratio"] > 0 and result["infer_ratio"] > 0


def test_bf16_training_unit_casts_the_updated_weights_at_every_step():
    """One autocast region over several optimizer steps would reuse its cached bf16 copy of the first step's
    weights; the unit opens one per forward pass, so its steps equal separately autocast steps."""
    import functools

    import torch

    from core.bench.timing import train_unit
    from core.corpus import poem_batches
    from core.model import ModelConfig, PoetryLM, autocast, masked_cross_entropy

    batches = poem_batches([[5, 6, 7, 8], [9, 10, 11], [4, 12, 13, 14, 15]], 3, seed=0, epoch=0) * 3
    cfg = ModelConfig(vocab_size=16, embed_size=8, hidden_size=8, num_layers=1, dropout=0.0)
    torch.manual_seed(0)
    unit, steps = PoetryLM(cfg), PoetryLM(cfg)
    steps.load_state_dict(unit.state_dict())
    opt_unit, opt_steps = (torch.optim.SGD(m.parameters(), lr=5.0) for m in (unit, steps))
    train_unit(unit, opt_unit, batches, True, functools.partial(autocast, "cpu", "bf16"))
    for batch in batches:
        with autocast("cpu", "bf16"):
            logits, _ = steps(batch.inputs, lengths=batch.lengths)
        masked_cross_entropy(logits, batch.targets, batch.mask).backward()
        opt_steps.step()
        opt_steps.zero_grad(set_to_none=True)
    for a, b in zip(unit.parameters(), steps.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
