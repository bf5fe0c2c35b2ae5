"""Linking by content on hand-made populations with real prompt text: one actor's paraphrased template
family links its accounts; public templates, popular system prompts and hub accounts do not link."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest

from distillguard.events.call_view import CallView
from distillguard.events.model import Account
from distillguard.features.account_window import AccountWindow, template_frame
from distillguard.linking import Indicator, LinkConfig, link
from distillguard.linking.content import families, jaccard, shingles
from distillguard.signals.template import Template

T0 = datetime(2026, 2, 9, tzinfo=UTC)
WEEK_S = 7 * 86400
TEMPLATE = Template()

PROBLEMS = [
    f"A farmer has {a} cows and buys {b} more. Each cow gives {c} litres of milk a day. How much milk is that in a week?"
    for a, b, c in [(12, 7, 9), (30, 4, 11), (8, 15, 6), (21, 3, 14), (5, 40, 2), (17, 9, 13)]
] + [
    f"A train leaves at {h}:00 and travels {v} km/h for {t} hours. How far does it go, and when does it arrive?"
    for h, v, t in [(7, 80, 3), (9, 120, 2), (14, 65, 5), (6, 90, 4), (11, 150, 1)]
]

# One pipeline's private template and the paraphrases its accounts rotate (no two identical).
PIPELINE = (
    "You are helping us build a tutoring dataset. Rewrite the problem below as a harder multi-step word "
    "problem, keep every number, and reply with the rewritten problem only.\n\nProblem:\n{q}\n\nRewritten problem:",
    "You are helping us build a tutoring dataset. Rewrite the problem below into a harder multi-step word "
    "problem, keep all the numbers, and reply with the rewritten problem only.\n\nProblem:\n{q}\n\nRewritten problem:",
    "You're helping us build a tutoring dataset. Turn the problem below into a harder multi-step word "
    "problem, keep every number, and reply with only the rewritten problem.\n\nOriginal problem:\n{q}\n\n"
    "Harder problem:",
    "We are building a tutoring dataset. Rewrite the problem below as a harder multi-step word problem; keep "
    "every number and reply with the rewritten problem only.\n\nProblem:\n{q}\n\nRewritten problem:",
    "You are helping us build a tutoring dataset: rewrite the problem below as a harder, multi-step word "
    "problem, keeping every number, and reply with the rewritten problem only.\n\nProblem:\n{q}\n\nRewritten:",
)
# Another actor's pipeline: different purpose, different wording.
GRADER = (
    "Act as a strict grader for our reward model. Read the question and the candidate answer, list every "
    "factual error, then give a score from 1 to 10 on the last line.\n\nQuestion:\n{q}\n\nCandidate answer:\n{a}",
    "Act as a strict grader for our reward model. Read the question and the candidate answer, list each "
    "factual mistake, then give a score from 1 to 10 on the final line.\n\nQuestion:\n{q}\n\nCandidate answer:\n{a}",
)
# A third: a translation corpus.
TRANSLATE = (
    "Translate the passage below into formal German for our parallel corpus. Keep names unchanged and return "
    "only the translation.\n\nPassage:\n{q}\n\nGerman:",
    "Translate the passage below into formal German for our parallel corpus. Keep all names unchanged and "
    "return the translation only.\n\nPassage:\n{q}\n\nGerman translation:",
)
# Public judge templates (MT-bench's single-answer and pairwise judges, shortened) and their system prompt.
JUDGES = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an "
    "AI assistant to the user question displayed below.\n\n[Question]\n{q}\n\n[The Start of Assistant's Answer]\n"
    "{a}\n[The End of Assistant's Answer]",
    "[User Question]\n{q}\n\n[The Start of Assistant A's Answer]\n{a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{a}\n[The End of Assistant B's Answer]",
)
JUDGE_SYSTEM = (
    "Please act as an impartial judge and evaluate the responses. Output your final verdict strictly."
)
ANSWERS = ["It is 30 because 12 plus 18 is 30.", "The answer is 4 km.", "Roughly 2,100 litres in total."]


def observe_all(prompts: list[tuple[str, str]], seed: int, ip: str | None = None) -> AccountWindow:
    """A window over (system prompt, prompt) calls at random times of one week, each from its own IP
    unless ``ip`` is given: nothing but what the account sends is shared."""
    rng = random.Random(seed)
    window = AccountWindow()
    times = sorted(T0 + timedelta(seconds=rng.uniform(0, WEEK_S)) for _ in prompts)
    for i, (ts, (system, prompt)) in enumerate(zip(times, prompts, strict=True)):
        view = CallView(
            event_id=f"{seed}-{i}",
            ts=ts,
            account_id=f"acct-{seed}",
            client_ip=ip or f"198.51.{rng.randrange(256)}.{rng.randrange(256)}",
            system_prompt=system,
            prompt=prompt,
        )
        window.observe(view, {}, TEMPLATE.fingerprint(view))
    return window


WORDS = (
    "sourdough", "bike", "lifetimes", "tides", "jetlag", "balcony", "tomatoes", "mortgage", "sprint", "violin",
    "kayak", "invoice", "router", "firmware", "garden", "resume", "tyres", "cellar", "passport", "printer",
)  # fmt: skip


def own_questions(seed: int, n: int) -> list[tuple[str, str]]:
    """Questions nobody else asks (no two share a frame)."""
    rng = random.Random(seed)
    return [
        (
            "",
            f"quick question about my {' '.join(rng.sample(WORDS, 3))}: what should i check before the {rng.choice(WORDS)}?",
        )
        for _ in range(n)
    ]


def pipeline_calls(
    templates: tuple[str, ...], seed: int, n: int, *, share: float = 1.0
) -> list[tuple[str, str]]:
    """``n`` calls, ``share`` of them through the templates (each account uses three of them)."""
    rng = random.Random(seed)
    mine = rng.sample(templates, k=min(3, len(templates)))
    calls = [
        ("", rng.choice(mine).format(q=rng.choice(PROBLEMS), a=rng.choice(ANSWERS)))
        for _ in range(round(n * share))
    ]
    return calls + own_questions(seed, n - len(calls))


@cache
def _background() -> dict[str, AccountWindow]:
    # 2,000 accounts asking their own questions: what a run looks like around the cases below
    return {f"bg-{i:04d}": observe_all(own_questions(10_000 + i, 4), 10_000 + i) for i in range(2000)}


def background() -> dict[str, AccountWindow]:
    return dict(_background())


def actor(
    name: str, templates: tuple[str, ...], size: int, seed: int, **kwargs: float
) -> dict[str, AccountWindow]:
    return {
        f"{name}-{k:02d}": observe_all(pipeline_calls(templates, seed + k, 24, **kwargs), seed + k)
        for k in range(size)
    }


def clusters_of(windows: dict[str, AccountWindow], config: LinkConfig | None = None) -> list[list[str]]:
    return sorted(c.accounts for c in link(windows, config=config))


# -- families --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other", "same_family"),
    [
        (PIPELINE[0], PIPELINE[1], True),  # two words changed
        (PIPELINE[0], PIPELINE[2], True),  # reworded opening and slot headers
        (PIPELINE[0], PIPELINE[4], True),  # punctuation and one verb form
        (PIPELINE[0], GRADER[0], False),  # another pipeline
        (PIPELINE[0], JUDGES[0], False),
        (JUDGES[0], JUDGES[1], True),  # MT-bench's single and pairwise judges: mostly the same headers
    ],
)
def test_paraphrased_frames_are_one_family(one: str, other: str, same_family: bool) -> None:
    frames = [template_frame(t.format(q=PROBLEMS[0], a=ANSWERS[0])) for t in (one, other)]
    similarity = jaccard(shingles(frames[0]), shingles(frames[1]))
    assert (similarity >= LinkConfig().content.min_jaccard) is same_family, similarity


def test_families_group_variants_and_count_their_users() -> None:
    windows = actor("pipe", PIPELINE, 5, seed=1) | actor("grade", GRADER, 3, seed=50)
    found = families(windows, "template", LinkConfig().content)
    pipeline = next(f for f in found if "tutoring" in f.preview)
    grader = next(f for f in found if "grader" in f.preview)
    assert pipeline.users == 5 and pipeline.variants >= 3
    assert grader.users == 3
    assert all(share == pytest.approx(1.0) for share in pipeline.shares.values())


# -- linking ---------------------------------------------------------------------------------------


def test_actor_sharing_only_a_paraphrased_template_family_is_linked_whole() -> None:
    windows = background() | actor("pipe", PIPELINE, 20, seed=100)
    clusters = link(windows)
    assert [c.accounts for c in clusters] == [sorted(f"pipe-{k:02d}" for k in range(20))]
    edge = clusters[0].edges[0]
    assert edge.kind == "template"
    # the evidence names the shared skeleton, the share of calls, how many accounts use it, the variants
    assert (
        "you are helping us build a tutoring dataset" in edge.evidence or "tutoring dataset" in edge.evidence
    )
    assert "100% / 100% of calls" in edge.evidence and "used by 20 of 2020 accounts" in edge.evidence
    assert "variants" in edge.evidence
    assert clusters[0].weakest_link is not None and clusters[0].weakest_link[2] >= 1.0


@pytest.mark.parametrize(
    ("judge_share", "other_judges", "why"),
    [
        (0.45, 0, "their judge calls are under half of what they send: the rest is their own"),
        (1.0, 60, "judge templates that 70 accounts of the run use are public"),
        (0.45, 60, "both"),
    ],
)
def test_eval_customers_sharing_public_judge_templates_are_not_linked(
    judge_share: float, other_judges: int, why: str
) -> None:
    windows = background()
    for i in range(10):
        calls = [
            (JUDGE_SYSTEM, JUDGES[k % 2].format(q=PROBLEMS[k % len(PROBLEMS)], a=ANSWERS[k % len(ANSWERS)]))
            for k in range(round(30 * judge_share))
        ]
        windows[f"eval-{i}"] = observe_all(calls + own_questions(300 + i, 30 - len(calls)), 300 + i)
    for i in range(other_judges):  # researchers and developers trying LLM-as-judge for a few calls
        calls = [(JUDGE_SYSTEM, JUDGES[k % 2].format(q=PROBLEMS[k], a=ANSWERS[0])) for k in range(3)]
        windows[f"dev-{i}"] = observe_all(calls + own_questions(700 + i, 7), 700 + i)
    assert link(windows) == [], why


def test_two_actors_with_different_templates_are_not_merged() -> None:
    windows = background() | actor("pipe", PIPELINE, 12, seed=100) | actor("grade", GRADER, 8, seed=200)
    assert clusters_of(windows) == [
        sorted(f"grade-{k:02d}" for k in range(8)),
        sorted(f"pipe-{k:02d}" for k in range(12)),
    ]


def test_popular_app_system_prompt_does_not_link() -> None:
    """App backends of one popular template product: one system prompt, their end users' questions."""
    system = (
        "You are Quill, a writing assistant inside a note-taking app. Help the user draft and shorten notes."
    )
    windows = background()
    for i in range(8):
        windows[f"app-{i}"] = observe_all([(system, q) for _, q in own_questions(900 + i, 40)], 900 + i)
    assert link(windows) == []


def test_actor_mixing_its_pipeline_into_chatter_links_only_as_far_as_the_pipeline_is_its_traffic() -> None:
    mostly = actor("pipe", PIPELINE, 6, seed=100, share=0.9)
    sometimes = actor("side", PIPELINE, 6, seed=400, share=0.3)
    windows = background() | mostly | sometimes
    assert clusters_of(windows) == [sorted(mostly)]


def test_windows_without_frames_still_link_on_identical_templates() -> None:
    """State built by the bulk path keeps template fingerprints but no frames: exact matches only."""
    exact = actor("pipe", PIPELINE[:1], 6, seed=100)
    for window in exact.values():
        window.template_frames.clear()
    assert clusters_of(background() | exact) == [sorted(exact)]


def test_an_ignored_template_is_nobodys_content() -> None:
    windows = background() | actor("pipe", PIPELINE, 6, seed=100)
    keys = {key for name, w in windows.items() if name.startswith("pipe") for key in w.templates.counts}
    config = LinkConfig(ignore=frozenset(Indicator("template", key) for key in keys))
    assert link(windows, config=config) == []


@pytest.mark.parametrize(
    ("sends", "pays_like", "expected"),
    [
        # between two actors: it stays with the one it shares the most with, the other stays apart
        ({"pipe": 16, "grade": 8}, None, [["grade"], ["pipe", "hub"], ["third"]]),
        # linked to three otherwise unrelated groups: a hub, it keeps none of its prompt-only links
        ({"pipe": 10, "grade": 10, "third": 10}, None, [["grade"], ["pipe"], ["third"]]),
        # pays with one actor's card and sends two others' templates: it stays where its card holds it
        ({"grade": 12, "third": 12}, "pipe", [["grade"], ["pipe", "hub"], ["third"]]),
    ],
)
def test_a_hub_account_is_not_a_bridge(
    sends: dict[str, int], pays_like: str | None, expected: list[list[str]]
) -> None:
    """An account that sends several actors' templates. Coverage alone keeps it out (it shares under
    half of what it sends with each); with coverage loosened so it links to each, the graph check
    still keeps the actors apart."""
    pipelines = {"pipe": (PIPELINE, 8, 100), "grade": (GRADER, 6, 200), "third": (TRANSLATE, 5, 300)}
    windows = background()
    members: dict[str, list[str]] = {"hub": ["hub"]}
    for name, (templates, size, seed) in pipelines.items():
        group = actor(name, templates, size, seed)
        windows |= group
        members[name] = sorted(group)
    rng = random.Random(3)
    calls = [
        ("", rng.choice(pipelines[name][0]).format(q=rng.choice(PROBLEMS), a=rng.choice(ANSWERS)))
        for name, n in sends.items()
        for _ in range(n)
    ]
    windows["hub"] = observe_all(calls, 3)
    accounts = {}
    if pays_like:
        card = {"payment_fingerprint": "pm_shared_card"}
        accounts = {aid: Account(account_id=aid, **card) for aid in ("hub", members[pays_like][0])}
    if not pays_like:
        assert sorted(c.accounts for c in link(windows, accounts)) == sorted(members[n] for n in pipelines)
    loose = LinkConfig()
    loose = replace(loose, content=replace(loose.content, min_coverage=0.05, full_coverage=0.2))
    want = sorted(sorted(a for name in group for a in members[name]) for group in expected)
    assert sorted(c.accounts for c in link(windows, accounts, config=loose)) == want


COT_SYSTEM = (
    "You are an AI assistant that helps people find information. Think step by step and justify "
    "every step before you give the final answer."
)


@pytest.mark.parametrize(
    ("shared_network", "shared_prompt", "linked"),
    [
        (True, True, True),  # the network names the pair, the system prompt agrees
        (True, False, False),  # a sign-up IP and an egress address alone: colleagues behind a NAT
        (False, True, False),  # a system prompt 70 accounts of the run use: public
    ],
)
def test_public_content_corroborates_a_pair_other_evidence_names(
    shared_network: bool, shared_prompt: bool, linked: bool
) -> None:
    windows = background()
    for i in range(64):  # others who use the same public system prompt on their own questions
        windows[f"user-{i}"] = observe_all([(COT_SYSTEM, q) for _, q in own_questions(500 + i, 8)], 500 + i)
    accounts = {}
    for k in range(6):
        system = COT_SYSTEM if shared_prompt else ""
        calls = [(system, q) for _, q in own_questions(800 + k, 12)]
        windows[f"egress-{k}"] = observe_all(calls, 800 + k, ip="203.0.113.77" if shared_network else None)
        signup = "198.51.100.23" if shared_network else f"192.0.2.{k}"
        accounts[f"egress-{k}"] = Account(account_id=f"egress-{k}", signup_ip=signup)
    clusters = link(windows, accounts)
    assert [c.accounts for c in clusters] == ([[f"egress-{k}" for k in range(6)]] if linked else [])
    if linked:
        kinds = {e.kind for e in clusters[0].edges}
        assert kinds == {"signup_ip", "ip", "system_prompt"}
