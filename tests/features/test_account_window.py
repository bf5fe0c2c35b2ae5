"""AccountWindow features on hand-made call sequences whose answers are known."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

import distillguard.features.account_window as account_window_module
import distillguard.features.catalog as catalog_module
import distillguard.features.checkpoints as checkpoints_module
import distillguard.features.columns as columns_module
import distillguard.features.reducers as reducers_module
import distillguard.features.segments as segments_module
import distillguard.linking.config as link_config_module
from distillguard.events.call_view import CallView
from distillguard.features import AccountWindow, feature_names
from distillguard.features.account_window import SIGNAL_NAMES, PackedWindow

T0 = datetime(2026, 2, 12, 10, 0, tzinfo=UTC)


def call(i: int, seconds: float, **fields) -> CallView:
    return CallView(event_id=str(i), ts=T0 + timedelta(seconds=seconds), account_id="a", **fields)


def run(calls, signals=None, fingerprints=None, embeddings=None) -> dict[str, float]:
    window = AccountWindow()
    for i, view in enumerate(calls):
        window.observe(
            view,
            signals[i] if signals else {},
            fingerprints[i] if fingerprints else None,
            embeddings[i] if embeddings is not None else None,
        )
    return window.features()


def test_metronome_script_with_one_template() -> None:
    calls = [
        call(i, 6.0 * i, prompt=f"Generate task {i}", n_user_turns=1, temperature=1.0, max_tokens=512)
        for i in range(100)
    ]
    f = run(calls, fingerprints=["gen-N"] * 100)
    expected = {
        "n_calls": 100.0,
        "active_hours": 1.0,
        "span_hours": 99 * 6 / 3600,
        "gap_cv": 0.0,
        "gap_regular_share": 1.0,
        "gap_burstiness": -1.0,
        "distinct_prompts": 100.0,
        "distinct_prompt_ratio": 1.0,
        "distinct_templates": 1.0,
        "top_template_share": 1.0,
        "single_turn_share": 1.0,
        "temperature_set_share": 1.0,
        "temperature_mean": 1.0,
        "param_profile_top_share": 1.0,
        "max_tokens_mean": 512.0,
    }
    for name, value in expected.items():
        assert f[name] == pytest.approx(value, abs=1e-9), name
    assert f["gap_median_s"] == pytest.approx(6.0, rel=0.05)


@pytest.mark.parametrize(
    ("gaps", "regular_share", "cv"),
    [
        ([10.0] * 10, 1.0, 0.0),  # perfectly regular
        ([10.0, 10.2, 9.9, 10.1] * 5, 1.0, 0.01),  # jitter within 5%
        ([1.0, 1000.0] * 10, 0.5, 0.998),  # alternating: half the gaps sit at the median
    ],
)
def test_timing_regularity(gaps: list[float], regular_share: float, cv: float) -> None:
    times = np.concatenate([[0.0], np.cumsum(gaps)])
    f = run([call(i, t) for i, t in enumerate(times)])
    assert f["gap_regular_share"] == pytest.approx(regular_share, abs=0.05)
    assert f["gap_cv"] == pytest.approx(cv, abs=0.01)


def test_signal_fire_rates_and_means() -> None:
    signals = [
        {"cot_extraction": 0.9, "grading_request": None},
        {"cot_extraction": 0.2, "grading_request": 0.6},
        {"cot_extraction": None, "grading_request": 0.4},
        {},
    ]
    f = run([call(i, i) for i in range(4)], signals=signals)
    assert f["cot_extraction_fire_rate"] == 0.25  # fired on one call of four
    assert f["cot_extraction_mean"] == pytest.approx(0.55)  # over the calls it scored
    assert f["grading_request_fire_rate"] == 0.25
    assert f["grading_request_mean"] == pytest.approx(0.5)
    assert f["any_signal_fire_rate"] == 0.5
    assert f["logit_probe_fire_rate"] == 0.0 and f["logit_probe_mean"] == 0.0


def test_router_key_fan_in_and_network() -> None:
    calls = [
        call(
            i,
            60 * i,
            end_user=f"user-{i % 4}" if i < 8 else "user-0",
            client_ip=f"10.0.0.{i % 2}",
            client_asn=64500,
            client_router="openrouter",
            client_user_agent="sdk/1",
            client_tls_fingerprint="tls-1",
        )
        for i in range(10)
    ]
    f = run(calls)
    assert f["end_user_share"] == 1.0
    assert f["distinct_end_users"] == 4.0
    assert f["top_end_user_share"] == pytest.approx(4 / 10)  # user-0: i=0, 4, 8, 9
    assert (
        f["distinct_ips"],
        f["distinct_asns"],
        f["distinct_user_agents"],
        f["distinct_tls_fingerprints"],
    ) == (2, 1, 1, 1)
    assert f["router_share"] == 1.0


def test_parameter_profile_and_lengths() -> None:
    calls = [
        call(
            0,
            0,
            prompt="abcd",
            system_prompt="sys",
            response_text="x" * 20,
            reasoning_text="r" * 10,
            logprobs=True,
            top_logprobs=5,
            logit_bias_size=3,
            n=4,
            stream=True,
            n_user_turns=3,
        ),
        call(1, 1, prompt="abc", response_text="y" * 3, temperature=0.0, status=500, n_user_turns=1),
    ]
    f = run(calls)
    assert f["logprobs_share"] == 0.5 and f["top_logprobs_mean"] == 5.0
    assert f["logit_bias_share"] == 0.5 and f["logit_bias_size_mean"] == 3.0
    assert f["n_multi_share"] == 0.5 and f["n_mean"] == 4.0
    assert f["stream_share"] == 0.5 and f["error_share"] == 0.5
    assert f["temperature_zero_share"] == 0.5
    assert f["single_turn_share"] == 0.5 and f["user_turns_mean"] == 2.0
    assert f["prompt_chars_mean"] == pytest.approx((7 + 3) / 2)
    # the failed call's error text is not an answer: only the first call's lengths count
    assert f["output_input_ratio"] == pytest.approx((30 + 1) / (7 + 1))
    assert f["reasoning_returned_share"] == 0.5
    assert f["system_prompt_share"] == 0.5 and f["distinct_system_prompts"] == 1.0
    assert f["param_profile_top_share"] == 0.5


def test_embedding_diversity() -> None:
    same = np.tile(np.array([[1.0, 0.0, 0.0]], dtype=np.float32), (20, 1))
    spread = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    spread /= np.linalg.norm(spread, axis=1, keepdims=True)
    narrow = run([call(i, i) for i in range(20)], embeddings=same)
    wide = run([call(i, i) for i in range(20)], embeddings=spread)
    assert narrow["embedding_dispersion"] == pytest.approx(0.0, abs=1e-9) and narrow["topic_buckets"] == 1.0
    assert wide["embedding_dispersion"] > 0.5 and wide["topic_coverage"] > narrow["topic_coverage"]
    assert wide["embedded_calls"] == 20.0


def test_feature_vector_is_stable_and_finite() -> None:
    names = feature_names()
    assert names == list(AccountWindow().features())
    assert len(names) == len(set(names))
    assert all(f"{s}_fire_rate" in names for s in SIGNAL_NAMES)
    f = run([call(0, 0)])
    assert list(f) == names and all(np.isfinite(v) for v in f.values())
    assert not any("language" in n or "country" in n for n in names)


def test_one_feature_reads_as_in_the_whole_vector() -> None:
    spread = np.random.default_rng(1).standard_normal((30, 4)).astype(np.float32)
    window = AccountWindow()
    for i in range(30):
        window.observe(
            call(i, 7.0 * i, prompt=f"question {i % 4}", system_prompt="be brief" if i % 3 else ""),
            {"cot_extraction": 0.9 if i % 2 else 0.1},
            f"template-{i % 5}",
            spread[i],
        )
    for features in (window.features(), AccountWindow().features()):
        w = window if features["n_calls"] else AccountWindow()
        assert {name: w.feature(name) for name in features} == features
    with pytest.raises(KeyError, match="no feature"):
        window.feature("nothing_of_that_name")


def test_unknown_signal_is_an_error_not_a_silent_drop() -> None:
    with pytest.raises(KeyError, match="templat"):
        AccountWindow().observe(call(0, 0), {"templat": 0.5}, None)


def test_first_and_last_seen() -> None:
    window = AccountWindow()
    for i in (0, 3600):
        window.observe(call(i, i), {}, None)
    assert (window.first_seen, window.last_seen) == (T0, T0 + timedelta(hours=1))


@pytest.mark.parametrize(
    "module",
    [
        reducers_module,
        account_window_module,
        catalog_module,
        checkpoints_module,
        columns_module,
        segments_module,
        link_config_module,
    ],
)
def test_doctests(module) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


def test_window_survives_pickling_for_worker_processes() -> None:
    import pickle

    window = AccountWindow()
    for i in range(50):
        window.observe(
            call(i, 7.0 * i, prompt=f"p{i}", client_ip="10.0.0.1"),
            {"logit_probe": 0.7},
            f"t{i % 3}",
            np.ones(4, dtype=np.float32) * i,
        )
    copy = pickle.loads(pickle.dumps(window))
    assert copy.features() == window.features()
    copy.observe(call(50, 400.0), {}, None)
    assert copy.features()["n_calls"] == 51.0 and window.features()["n_calls"] == 50.0


def _busy_window(calls: int = 50, offset: int = 0) -> AccountWindow:
    window = AccountWindow()
    for i in range(offset, offset + calls):
        window.observe(
            call(i, 7.0 * i, prompt=f"p{i % 7}", client_ip=f"10.0.0.{i % 3}", system_prompt="s"),
            {"logit_probe": 0.7 if i % 2 else 0.1},
            f"t{i % 3}",
            np.ones(4, dtype=np.float32) * i,
        )
    return window


def test_packed_window_reads_as_the_window_it_packs() -> None:
    import pickle

    window = _busy_window()
    packed = window.packed()
    assert isinstance(packed, PackedWindow) and packed.packed() is packed
    assert packed.features() == window.features()
    assert packed.n == window.n == 50 and packed.any_fired == window.any_fired
    assert packed.templates.counts == window.templates.counts
    assert packed.system_previews == window.system_previews
    assert packed.first_seen == window.first_seen and packed.last_seen == window.last_seen
    assert dict(packed.states.items()).keys() == window.states.keys()
    again = pickle.loads(pickle.dumps(packed))
    assert isinstance(again, PackedWindow) and again.features() == window.features()
    # each state pickled on its own repeats its class's name: some overhead, bounded
    assert len(pickle.dumps(packed)) < 2 * len(pickle.dumps(window))


def test_packed_window_is_read_only_and_merges_through_a_copy() -> None:
    first, second = _busy_window(), _busy_window(offset=50)
    packed = first.packed()
    with pytest.raises(TypeError, match="read-only"):
        packed.observe(call(99, 999.0), {}, None)
    with pytest.raises(TypeError, match="read-only"):
        packed.merge(second)
    packed.templates.counts.clear()  # a read is a fresh copy: the packed state is untouched
    assert packed.templates.counts == first.templates.counts
    merged = packed.unpacked().merge(second.packed())
    expected = _busy_window().merge(_busy_window(offset=50))
    assert merged.features() == expected.features()
    assert packed.features() == first.features()  # unpacked() was a copy


def test_a_remembering_window_unpickles_each_state_once_and_leaves_the_packed_one_alone() -> None:
    window = _busy_window()
    assert window.remembering() is window  # its states are objects already
    packed = window.packed()
    remembering = packed.remembering()
    assert isinstance(remembering, PackedWindow)
    assert remembering.templates is remembering.templates  # one copy, read once
    assert remembering.n == window.n and remembering.features() == window.features()
    remembering.templates.counts.clear()
    assert packed.templates.counts == window.templates.counts


def test_output_lengths_abstain_on_calls_without_an_answer() -> None:
    answered = call(0, 0.0, prompt="abcd", response_text="x" * 40, n_user_turns=1)
    failed = call(1, 5.0, prompt="abcdefgh", response_text="", status=500, n_user_turns=1)
    empty = call(2, 9.0, prompt="ab", response_text="", n_user_turns=1)
    f = run([answered, failed, empty])
    assert f["response_chars_mean"] == 40.0  # not (40 + 0 + 0) / 3
    assert f["output_input_ratio"] == pytest.approx(41 / 5)  # the answered call's prompt only
    assert f["answered_share"] == pytest.approx(1 / 3)
    nothing = run([failed])
    assert nothing["response_chars_mean"] == 0.0 and nothing["output_input_ratio"] == 0.0


def test_topic_novelty_and_template_refill() -> None:
    rng = np.random.default_rng(3)
    sweep = rng.normal(size=(40, 16))
    sweep /= np.linalg.norm(sweep, axis=1, keepdims=True)
    same = np.tile(sweep[:1], (40, 1))
    calls = [call(i, 60.0 * i, prompt=f"Explain topic {i}", n_user_turns=1) for i in range(40)]
    swept = run(calls, fingerprints=["explain-N"] * 40, embeddings=sweep)
    repeated = run(calls, fingerprints=["explain-N"] * 40, embeddings=same)
    assert swept["topic_novelty"] > 0.4 > repeated["topic_novelty"] == pytest.approx(1 / 40)
    assert swept["template_refill_share"] == pytest.approx(39 / 40)
