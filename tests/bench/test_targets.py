"""The benchmark table: review load read on the 'distiller or suspicious' reading, and a baseline
without a value on a line is never counted as beaten."""

from __future__ import annotations

from distillguard.bench.detection import evaluate
from distillguard.bench.targets import comparison, render_table
from distillguard.events.model import AccountVerdict, Label


def _verdict(account: str, kind: str) -> AccountVerdict:
    flagged = kind == "distiller"
    return AccountVerdict(
        account_id=account,
        risk=0.5,
        verdict=kind,
        cluster_id=None,
        first_flagged_at=None,
        calls_to_flag=5 if flagged else None,
        reasons=[],
    )


LABELS = {
    **{
        f"dev{i}": Label(account_id=f"dev{i}", label="benign", actor=None, tactic="developer")
        for i in range(10)
    },
    "d1": Label(account_id="d1", label="distiller", actor="x", tactic="rl_grading"),
}


def test_review_load_reads_suspicious_verdicts_per_population() -> None:
    verdicts = {a: _verdict(a, "benign") for a in LABELS}
    verdicts["dev0"] = _verdict("dev0", "suspicious")
    verdicts["d1"] = _verdict("d1", "distiller")
    rows = {row["metric"]: row for row in comparison(evaluate(LABELS, verdicts), {})}
    review = rows["review load: developer"]
    assert review["system"] == 0.1 and review["meets_target"] is False  # 1 of 10 > 2%
    assert rows["FPR: developer"]["system"] == 0.0 and rows["FPR: developer"]["meets_target"] is True


def test_a_baseline_without_a_value_is_never_beaten() -> None:
    verdicts = {a: _verdict(a, "benign") for a in LABELS} | {"d1": _verdict("d1", "distiller")}
    system = evaluate(LABELS, verdicts)
    rows = {row["metric"]: row for row in comparison(system, {"nothing": evaluate(LABELS, {})})}
    # the empty baseline has calls-to-flag n/a: the line cannot be claimed as beaten
    assert rows["calls to flag, median (campaigns)"]["beats_baselines"] is None
    assert rows["recall, campaign accounts"]["beats_baselines"] is True
    table = render_table(system, {}, variants={"content+behaviour": system})
    assert "content+behaviour" in table.splitlines()[0]
