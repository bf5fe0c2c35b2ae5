"""`distillguard bench detect-suite`: the detection benchmark end to end, preset by preset.

For each simulator preset: simulate a calibration scenario (the DEV split the models were
calibrated on) and the scenario to measure (DEV with another seed while developing, TEST for the
final report), replay each once, score the replay with the full model and with the
content-behaviour model, calibrate both baselines on the SAME dev traffic to the false-positive
rate DistillGuard's full model has there, and print one table per preset with every column side
by side. Everything is measured in one run on one simulator revision.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from distillguard.events.model import AccountVerdict, Label, to_json_line

SYSTEMS = {"DistillGuard": "full", "content+behaviour": "content-behaviour"}


def _verdicts(replay: Any, scorer: Any, accounts_path: Path) -> dict[str, AccountVerdict]:
    from distillguard.events.accounts import read_accounts
    from distillguard.scan.pipeline import decide

    result = decide(replay, scorer, read_accounts(accounts_path))
    return {v.account_id: v for v in result.verdicts}


def _fpr(labels: Mapping[str, Label], verdicts: Mapping[str, AccountVerdict]) -> float:
    benign = [a for a, label in labels.items() if label.label == "benign"]
    flagged = sum(1 for a in benign if a in verdicts and verdicts[a].verdict == "distiller")
    return flagged / len(benign) if benign else 0.0


def run_preset(
    preset: str,
    *,
    corpus: Path | None,
    split: str,
    seed: int,
    calibration_seed: int,
    work: Path,
    workers: int,
    also: Mapping[str, Path] | None = None,
    log: Any = click.echo,
) -> dict[str, Any]:
    """Every report of one preset: the systems, the baselines and how the baselines were set up."""
    from distillguard.bench import baselines as bl
    from distillguard.bench.detection import evaluate
    from distillguard.bench.records import read_labels
    from distillguard.features.catalog import FEATURES
    from distillguard.scoring.scorer import AccountScorer
    from distillguard.training.scorer import replay_cached, simulate

    if split == "dev" and seed == calibration_seed:
        raise click.UsageError("measure DEV on another seed than the calibration scenario's")
    cal_dir = simulate("dev", preset, calibration_seed, corpus, work)
    eval_dir = simulate(split, preset, seed, corpus, work)
    cal_replay = replay_cached(cal_dir, workers)
    eval_replay = replay_cached(eval_dir, workers)
    cal_labels = read_labels(cal_dir / "labels.jsonl")
    labels = read_labels(eval_dir / "labels.jsonl")

    reports: dict[str, Any] = {}
    cal_fpr: dict[str, float] = {}
    models: dict[str, str | Path] = {**SYSTEMS, **(also or {})}
    for name, model in models.items():
        scorer = AccountScorer.load(FEATURES, model=model)
        cal_fpr[name] = _fpr(cal_labels, _verdicts(cal_replay, scorer, cal_dir / "accounts.jsonl"))
        verdicts = _verdicts(eval_replay, scorer, eval_dir / "accounts.jsonl")
        reports[name] = evaluate(labels, verdicts)
        tag = model if isinstance(model, str) else name
        out = work / "verdicts" / preset / f"{split}-{seed}-{tag}.accounts_out.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"".join(to_json_line(v) + b"\n" for v in verdicts.values()))

    # the baselines get the false-positive budget DistillGuard spends on the same dev traffic
    target = cal_fpr["DistillGuard"]
    calibration = (bl.read_store_calls(str(cal_dir / "store")), cal_labels)
    outputs, setup = bl.run_baselines(
        bl.read_store_calls(str(eval_dir / "store")), calibration=calibration, target_fpr=target
    )
    baselines = {name: evaluate(labels, produced) for name, produced in outputs.items()}
    log(f"\n== preset {preset}: {split} split seed {seed}; calibration: dev seed {calibration_seed} ==")
    return {
        "preset": preset,
        "split": split,
        "seed": seed,
        "calibration_seed": calibration_seed,
        "calibration_fpr": cal_fpr,
        "baseline_setup": setup,
        "systems": reports,
        "baselines": baselines,
    }


@click.command("detect-suite")
@click.option(
    "--preset",
    "presets",
    multiple=True,
    default=("default", "careful"),
    show_default=True,
    help="Simulator presets to measure (repeat the option).",
)
@click.option(
    "--corpus",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Development corpora (../shared/data); default: the shipped sample.",
)
@click.option(
    "--split",
    type=click.Choice(["dev", "test"]),
    default="dev",
    show_default=True,
    help="DEV while developing; TEST only for the final report.",
)
@click.option("--seed", default=404, show_default=True, help="Seed of the measured scenario.")
@click.option(
    "--calibration-seed",
    default=202,
    show_default=True,
    help="Seed of the DEV scenario the models were calibrated on (the baselines are calibrated there too).",
)
@click.option(
    "--work",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/train"),
    show_default=True,
    help="Simulations and replays are kept here and reused (shared with `train scorer`).",
)
@click.option("--workers", default=2, show_default=True)
@click.option(
    "--also",
    "also_specs",
    multiple=True,
    help="Another model folder to score side by side, as NAME=FOLDER (e.g. the previous release's).",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write every metric here."
)
def detect_suite(
    presets: Sequence[str],
    corpus: Path | None,
    split: str,
    seed: int,
    calibration_seed: int,
    work: Path,
    workers: int,
    also_specs: Sequence[str],
    json_path: Path | None,
) -> None:
    """Detection quality of the full and the content-behaviour models on each preset, next to both
    baselines calibrated on the same DEV traffic to DistillGuard's false-positive rate there."""
    from distillguard.bench.targets import comparison, render_table

    also: dict[str, Path] = {}
    for spec in also_specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not Path(folder).is_dir():
            raise click.BadParameter(
                f"{spec!r}: expected NAME=FOLDER with an existing folder", param_hint="--also"
            )
        also[name] = Path(folder)
    results = []
    for preset in presets:
        result = run_preset(
            preset,
            corpus=corpus,
            split=split,
            seed=seed,
            calibration_seed=calibration_seed,
            work=work,
            workers=workers,
            also=also,
        )
        system = result["systems"]["DistillGuard"]
        variants = {k: v for k, v in result["systems"].items() if k != "DistillGuard"}
        click.echo(render_table(system, result["baselines"], variants=variants))
        fpr = result["calibration_fpr"]
        click.echo(
            "baselines calibrated on the dev scenario to DistillGuard's FPR there "
            f"({100 * fpr['DistillGuard']:.3f}%; content+behaviour: {100 * fpr['content+behaviour']:.3f}%): "
            f"rate limit {result['baseline_setup']['rate-limit']['threshold']} calls/day, "
            f"PRADA-like delta {result['baseline_setup']['PRADA-like']['delta']:.3f}"
        )
        result["table"] = comparison(system, result["baselines"])
        results.append(result)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
