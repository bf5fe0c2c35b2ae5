"""Training of the account risk model: `distillguard train scorer`.

The model learns from simulated traffic drawn only from TRAIN template families; its thresholds
are calibrated on BENIGN accounts of a separate DEV simulation (other families, other accounts),
for a target false-positive rate, and never on the attacks. Test families are never read here:
`distillguard bench detect` measures on them.

Every checkpoint of an account's replay is a training row (weighted so each account counts once),
so the model learns to judge an account after 5 calls as well as after 5,000.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from distillguard.events.accounts import read_accounts, read_labels
from distillguard.events.model import Label
from distillguard.events.readers import ReaderOptions, iter_events
from distillguard.events.store import CallStore
from distillguard.features.catalog import FEATURES
from distillguard.features.provenance import FAKEABLE, without
from distillguard.scan.pipeline import ReplayResult, checkpoint_matrix, decide, replay_store
from distillguard.scoring.risk_model import (
    DISTILLER_RISK,
    MODEL_META,
    SUSPICIOUS_RISK,
    RiskModel,
    Thresholds,
    threshold_for_fpr,
    train_risk_model,
)
from distillguard.scoring.scorer import AccountScorer

MODELS_DIR = Path(__file__).parent / "models"
# Free request parameters an adversary sets at no cost (and any client library defaults), whose
# benign distribution in the simulator is not grounded in logged traffic: a model that keys on
# them learns the simulator, not distillation (the first model did: max_tokens_mean was its top
# feature). Rules and the logit_probe signal still read them; the model does not.
MODEL_EXCLUDED = (
    "max_tokens_mean",
    "max_tokens_set_share",
    "temperature_mean",
    "temperature_std",
    "temperature_set_share",
    "temperature_zero_share",
    "top_p_set_share",
    "n_mean",
    "param_profile_top_share",
    "stream_share",
)
MODEL_FEATURES = tuple(name for name in FEATURES if name not in MODEL_EXCLUDED)


def model_features(exclude: Sequence[str] = ()) -> tuple[str, ...]:
    """The model's columns: every feature but the free parameters above and those whose provenance
    is in ``exclude`` (the content-behaviour model leaves out metadata and request parameters)."""
    return without(MODEL_FEATURES, exclude) if exclude else MODEL_FEATURES


# the distiller threshold's false-positive budget in each benign population of the dev traffic
# (half the 0.5% bar, for the sampling noise between dev and unseen traffic)
POPULATION_FPR = 0.0025
# the review band sits at least this far below the distiller threshold in log-odds, even when
# ties among the top benign risks would otherwise put both thresholds at one value
REVIEW_BAND_LOGIT = 1.0
# accounts allow-listed by policy distil by design: they would teach the model that distillation is benign
EXCLUDED_TACTICS = ("sanctioned_distillation",)


def simulate(split: str, preset: str, seed: int, corpus: Path | None, work: Path) -> Path:
    """Run `distillguard sim` for one split into work/<preset>/<split>-<seed> and ingest it into a
    call store there (kept: training, calibration and `bench detect-suite` reuse it)."""
    folder = work / preset / f"{split}-{seed}"
    if not (folder / "labels.jsonl").exists():
        command = [sys.executable, "-m", "distillguard", "sim", "--preset", preset, "--seed", str(seed)]
        command += ["--split", split, "--out", str(folder)]
        if corpus is not None:
            command += ["--corpus", str(corpus)]
        subprocess.run(command, check=True)
    store = folder / "store"
    if not store.exists():
        events = sorted(folder.glob("events.jsonl*"))
        CallStore.ingest(
            store, iter_events(events, "canonical", ReaderOptions()), sources=[str(p) for p in events]
        )
    return folder


def replay_cached(folder: Path, workers: int) -> ReplayResult:
    """The replay of a simulated split, kept next to it so retraining does not replay again.

    The cache file is named by a digest of the feature names, the signal versions and the source of
    the features package, so a change to any of them replays afresh instead of training on stale
    vectors or unpickling state of another shape.
    """
    import distillguard.features as features_package
    from distillguard.signals import registry

    identity = (
        "|".join(FEATURES)
        + "|"
        + "|".join(f"{n}:{registry.signal_class(n).version}" for n in registry.names())
    )
    digest_of = hashlib.blake2b(identity.encode(), digest_size=6)
    # the cache pickles account state: any change to how that state is kept (not only to the
    # feature names) must replay afresh rather than unpickle into classes that changed shape
    for source in sorted(Path(features_package.__file__).parent.glob("*.py")):
        digest_of.update(source.read_bytes())
    digest = digest_of.hexdigest()
    cache = folder / f"replay-{digest}.pickle"
    if cache.exists():
        with cache.open("rb") as f:
            cached: ReplayResult = pickle.load(f)
        return cached
    replay = replay_store(CallStore.open(folder / "store"), workers=workers, progress=False)
    with cache.open("wb") as f:
        pickle.dump(replay, f, protocol=pickle.HIGHEST_PROTOCOL)
    return replay


def training_rows(
    replay: ReplayResult, labels: dict[str, Label], columns: Sequence[str] = MODEL_FEATURES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checkpoint rows, their 0/1 labels and weights (each account's rows sum to one)."""
    replays = [r for r in replay.accounts.values() if labels[r.account_id].tactic not in EXCLUDED_TACTICS]
    matrix, owners = checkpoint_matrix(replays)
    y = np.array([labels[replays[i].account_id].label == "distiller" for i in owners], dtype=float)
    counts = np.bincount(owners, minlength=len(replays)).astype(float)
    weights = 1.0 / counts[owners]
    # the two classes weigh the same in total, whatever the simulated mix
    for value in (0.0, 1.0):
        mask = y == value
        if mask.any():
            weights[mask] *= len(replays) / 2 / weights[mask].sum()
    return matrix[:, [FEATURES.index(name) for name in columns]].astype(np.float64), y, weights


def review_threshold(distiller: float, suspicious: float) -> float:
    """The suspicious threshold, kept strictly below the distiller one so a review band exists.

    >>> round(review_threshold(0.9, 0.5), 3), round(review_threshold(0.9, 0.9), 3)
    (0.5, 0.768)
    """
    if distiller >= 1.0:
        return min(suspicious, float(np.nextafter(1.0, 0.0)))
    odds = math.log(distiller / (1.0 - distiller)) - REVIEW_BAND_LOGIT
    return min(suspicious, 1.0 / (1.0 + math.exp(-odds)))


def calibrate(
    model: RiskModel,
    dev_sets: Sequence[tuple[ReplayResult, dict[str, Label], Path]],
    *,
    target_fpr: float,
    suspicious_fpr: float,
    population_fpr: float = POPULATION_FPR,
) -> tuple[Thresholds, dict[str, Any]]:
    """Thresholds from the final risks (after linking) of the DEV simulations' benign accounts
    (each dev set: its replay, labels and accounts.jsonl).

    The model alone is calibrated (rules are statements on the fixed risk scale, and their own
    false positives on dev are reported separately); `model` must carry the identity scaling
    (thresholds at DISTILLER_RISK / SUSPICIOUS_RISK) while this runs.
    """
    scorer = AccountScorer([], model, FEATURES)
    benign: list[float] = []
    by_population: dict[str, list[float]] = {}
    distillers: list[float] = []
    for replay, labels, accounts_path in dev_sets:
        result = decide(replay, scorer, read_accounts(accounts_path))
        for v in result.verdicts:
            label = labels[v.account_id]
            if label.label == "distiller":
                distillers.append(v.risk)
            elif label.tactic not in EXCLUDED_TACTICS:
                benign.append(v.risk)
                by_population.setdefault(label.tactic, []).append(v.risk)
    # the bar holds in every benign population, not only on average: the threshold is also the
    # one each population needs for `population_fpr` on its own (hard groups such as evaluation
    # customers would otherwise spend the whole budget)
    per_population = {p: threshold_for_fpr(r, population_fpr) for p, r in by_population.items()}
    distiller = max([threshold_for_fpr(benign, target_fpr), *per_population.values()])
    thresholds = Thresholds(
        distiller=distiller,
        suspicious=review_threshold(distiller, threshold_for_fpr(benign, suspicious_fpr)),
        target_fpr_distiller=target_fpr,
        target_fpr_suspicious=suspicious_fpr,
        calibrated_on=f"{len(benign)} benign accounts of {len(dev_sets)} dev simulation(s)",
    )
    recall = float(np.mean([r >= thresholds.distiller for r in distillers])) if distillers else 0.0
    return thresholds, {
        "dev_benign_accounts": len(benign),
        "dev_distillers": len(distillers),
        "dev_recall": recall,
        "dev_suspicious_share_benign": float(np.mean([r >= thresholds.suspicious for r in benign])),
        "dev_population_thresholds": {p: round(t, 6) for p, t in sorted(per_population.items())},
    }


def preset_seeds(spec: str, default_seed: int) -> tuple[str, tuple[int, ...]]:
    """A training preset as `name` or `name:seed,seed,...` (several train scenarios of one preset).

    >>> preset_seeds("careful", 101), preset_seeds("small:101,102", 101)
    (('careful', (101,)), ('small', (101, 102)))
    """
    name, _, seeds = spec.partition(":")
    try:
        parsed = tuple(int(s) for s in seeds.split(",")) if seeds else (default_seed,)
    except ValueError as error:
        raise ValueError(f"preset {spec!r}: seeds must be integers (name:101,102)") from error
    return name, parsed


def train_scorer(
    *,
    corpus: Path | None,
    presets: Sequence[str],
    work: Path,
    out: Path,
    seeds: Sequence[int] = (101, 202),
    target_fpr: float = 0.0005,
    suspicious_fpr: float = 0.005,
    exclude: Sequence[str] = (),
    workers: int = 2,
    log: Any = print,
) -> RiskModel:
    """Train on the TRAIN split of every preset together (so the model sees distillers that hide
    in metadata next to those that do not) and calibrate on their DEV splits together."""
    started = time.perf_counter()
    columns = model_features(exclude)
    xs, ys, ws = [], [], []
    dev_sets = []
    names = []
    for spec in presets:
        preset, train_seeds = preset_seeds(spec, seeds[0])
        names.append(f"{preset} (train seeds {', '.join(map(str, train_seeds))})")
        rows = []
        for seed in train_seeds:
            train_dir = simulate("train", preset, seed, corpus, work)
            train_replay = replay_cached(train_dir, workers)
            rows.append(training_rows(train_replay, read_labels(train_dir / "labels.jsonl"), columns))
            log(f"{preset} seed {seed}: {train_replay.calls:,} train calls, {len(rows[-1][0]):,} rows")
        x = np.concatenate([r[0] for r in rows])
        y = np.concatenate([r[1] for r in rows])
        w = np.concatenate([r[2] for r in rows])
        xs.append(x)
        ys.append(y)
        ws.append(w / w.sum())  # each preset weighs the same, whatever its size and seeds
        dev_dir = simulate("dev", preset, seeds[1], corpus, work)
        dev_sets.append(
            (
                replay_cached(dev_dir, workers),
                read_labels(dev_dir / "labels.jsonl"),
                dev_dir / "accounts.jsonl",
            )
        )
    x, y, w = np.concatenate(xs), np.concatenate(ys), np.concatenate(ws) * len(np.concatenate(ys))
    booster = train_risk_model(x, y.tolist(), columns, weights=w)
    # thresholds at the fixed points make the model's scaling the identity until calibrated
    placeholder = Thresholds(
        DISTILLER_RISK, SUSPICIOUS_RISK, target_fpr, suspicious_fpr, "not yet calibrated"
    )
    meta = {
        "trained_on": f"sim presets {'; '.join(names)}, split train",
        "calibrated_on": f"sim presets {', '.join(presets)} split dev seed {seeds[1]}",
        "corpus": str(corpus) if corpus else "shipped sample",
        "rows": len(x),
        "excluded_features": list(MODEL_EXCLUDED),
        "excluded_provenances": list(exclude),
    }
    model = RiskModel(booster, columns, placeholder, meta)
    thresholds, report = calibrate(model, dev_sets, target_fpr=target_fpr, suspicious_fpr=suspicious_fpr)
    model.thresholds = thresholds
    model.meta.update(report)
    model.save(out)
    log(
        f"distiller threshold {thresholds.distiller:.4f} (dev benign FPR ≤ {target_fpr:.2%}), suspicious "
        f"{thresholds.suspicious:.4f}; dev recall {report['dev_recall']:.3f}; wrote {out / MODEL_META} "
        f"in {time.perf_counter() - started:.0f} s"
    )
    return model


@click.command("scorer")
@click.option(
    "--corpus",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Development corpora (../shared/data); default: the shipped sample.",
)
@click.option(
    "--preset",
    "presets",
    multiple=True,
    default=("careful", "small:101,102,103"),
    show_default=True,
    help="Simulator presets trained on together (repeat the option); `name:101,102` trains on "
    "several seeds of one preset.",
)
@click.option(
    "--content-behaviour",
    is_flag=True,
    help="Leave out metadata and request-parameter features (the model `scan --model "
    "content-behaviour` uses).",
)
@click.option(
    "--work",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/train"),
    show_default=True,
    help="Where the simulated train/dev traffic is kept (reused if present).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model folder [default: the package's models/, or models/content_behaviour/].",
)
@click.option(
    "--target-fpr", default=0.0005, show_default=True, help="Distiller threshold's benign FPR on dev."
)
@click.option("--workers", default=2, show_default=True)
def train_scorer_command(
    corpus: Path | None,
    presets: tuple[str, ...],
    content_behaviour: bool,
    work: Path,
    out: Path | None,
    target_fpr: float,
    workers: int,
) -> None:
    """Train the account risk model on simulated TRAIN-family traffic; calibrate it on DEV."""
    if out is None:
        out = MODELS_DIR / "content_behaviour" if content_behaviour else MODELS_DIR
    train_scorer(
        corpus=corpus,
        presets=presets,
        work=work,
        out=out,
        target_fpr=target_fpr,
        exclude=FAKEABLE if content_behaviour else (),
        workers=workers,
        log=click.echo,
    )
