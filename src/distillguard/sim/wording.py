"""Adversary wording the simulator writes itself, split train / dev / test like the corpus families.

Harvest wrappers, paraphrased and translated templates, paraphrased CoT system prompts, rewordings
of generation templates, judge prompt formats, and the topics and phrasings of topic sweeps: each
table has three disjoint parts, and a run uses only the part of its `--split`, so TEST traffic is
worded in ways that TRAIN never saw (the same discipline as the corpus families, docs/split.md).
None of it contains the trace cue words the reasoning_leak signal looks for (a test checks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from distillguard.corpus import SPLITS


@dataclass(frozen=True, slots=True)
class JudgeFormat:
    """A grading prompt the simulator writes: `prompt` with {question} and {answer} (or {answer_a},
    {answer_b}), and the shape of the judge's verdict, filled with {ab} (A/B), {ab_lower} (a/b),
    {score5}, {score10}, {likert} and {why} (the justification)."""

    prompt: str
    verdict: str


# How a response harvester may wrap an instruction; "{q}" is no wrapper at all.
HARVEST_WRAPPERS = {
    "train": (
        "{q}",
        "{q}",
        "{q}",
        "Answer the following question thoroughly.\n\n{q}",
        "Instruction: {q}\nResponse:",
        "Please respond to the following instruction.\n\n### Instruction:\n{q}\n\n### Response:",
        "Q: {q}\nA:",
    ),
    "dev": (
        "{q}",
        "{q}",
        "{q}",
        "Give a complete answer to this:\n\n{q}",
        "Task: {q}\nOutput:",
        "Question:\n{q}\n\nAnswer:",
    ),
    "test": (
        "{q}",
        "{q}",
        "{q}",
        "Respond in full detail.\n\n{q}",
        "USER REQUEST: {q}\nASSISTANT REPLY:",
        "Input: {q}\n\nWrite the best possible answer.",
        "{q}\n\nAnswer comprehensively.",
    ),
}

# Paraphrased wrappers an adaptive adversary rotates so that no single template repeats.
PARAPHRASED_WRAPPERS = {
    "train": (
        "hey quick one - {q}",
        "{q} (keep it detailed pls)",
        "I've been wondering about this: {q}",
        "My teacher asked us this and I'm stuck: {q}",
        "{q}\n\nThanks in advance!",
        "Could you help me with something? {q}",
        "for a blog post I'm writing: {q}",
        "{q} Explain your answer.",
    ),
    "dev": (
        "random question but {q}",
        "{q} - would love a thorough reply",
        "A friend and I were arguing about this. {q}",
        "{q}\n\nappreciate it :)",
        "Need this for a presentation tomorrow: {q}",
        "{q} Please be specific.",
    ),
    "test": (
        "so here's a thing I never understood: {q}",
        "{q} (as much detail as you can)",
        "Studying for an exam. {q}",
        "{q}\n\nCheers!",
        "Can I ask you something? {q}",
        "writing a newsletter and need help: {q}",
        "{q} Walk me through why.",
        "quick question: {q}",
    ),
}

# The same harvest asked in another language: (language, wrapper).
TRANSLATED_WRAPPERS = {
    "train": (
        ("es", "Responde detalladamente a la siguiente pregunta:\n\n{q}"),
        ("de", "Beantworte die folgende Frage ausführlich:\n\n{q}"),
        ("zh", "请详细回答下面的问题，并给出推理过程：\n\n{q}"),
        ("ru", "Подробно ответь на следующий вопрос:\n\n{q}"),
        ("ko", "다음 질문에 자세히 답해 주세요.\n\n{q}"),
    ),
    "dev": (
        ("fr", "Réponds de manière détaillée à la question suivante :\n\n{q}"),
        ("pt", "Responda detalhadamente à seguinte pergunta:\n\n{q}"),
        ("zh", "请认真回答这个问题：\n\n{q}"),
        ("it", "Rispondi in modo approfondito alla seguente domanda:\n\n{q}"),
    ),
    "test": (
        ("ja", "次の質問に詳しく答えてください。\n\n{q}"),
        ("es", "Necesito una respuesta completa a esto:\n\n{q}"),
        ("de", "Bitte erkläre ausführlich:\n\n{q}"),
        ("zh", "请用中文完整地解答下列题目：\n\n{q}"),
        ("fr", "Peux-tu répondre en détail ?\n\n{q}"),
        ("ru", "Дай развёрнутый ответ:\n\n{q}"),
    ),
}

# Paraphrased system prompts of a CoT harvester (the intent of the Orca / R1 ones, reworded).
COT_SYSTEMS = {
    "train": (
        "Work through the problem carefully, writing out each intermediate step before the result.",
        "Take your time. Lay out your thinking in full, then state the final answer.",
        "You are a meticulous assistant: show all of your work, step after step, and box the final answer.",
        "Think out loud in detail before answering; do not skip any step of the derivation.",
    ),
    "dev": (
        "Before the answer, write down the complete derivation, one line per step.",
        "Explain every step that leads to your answer, then give the answer on the last line.",
        "You are a tutor who never skips steps: justify each one, and put the final result in a box.",
    ),
    "test": (
        "Solve it the long way: spell out every intermediate result, then the conclusion.",
        "Present your full chain of deductions first and the final answer after it.",
        "Be exhaustive. Each step of the solution gets its own numbered line; end with the answer.",
        "Document the entire solution path in detail, and only then state what the answer is.",
    ),
}

# Rewordings of generation templates (self-instruct, Evol, ...): (original phrase, replacement).
GENERATION_REWORDINGS = {
    "train": (
        ("You are asked to come up with", "Please brainstorm"),
        ("diverse", "varied"),
        ("instructions", "tasks"),
        ("I want you act as a Prompt Creator.", "Act as someone who writes new prompts."),
        ("Your goal is to", "You should"),
        ("#Given Prompt#", "[Original]"),
        ("#Created Prompt#", "[New]"),
        ("Be concise. Be creative.", "Keep it short and original."),
        ("List", "Write down"),
    ),
    "dev": (
        ("You are asked to come up with", "Generate"),
        ("diverse", "assorted"),
        ("instructions", "requests"),
        ("Your goal is to", "The job is to"),
        ("#Given Prompt#", "<<source>>"),
        ("#Created Prompt#", "<<result>>"),
        ("List", "Enumerate"),
    ),
    "test": (
        ("You are asked to come up with", "Produce"),
        ("diverse", "heterogeneous"),
        ("instructions", "assignments"),
        ("I want you act as a Prompt Creator.", "Your role: author of fresh prompts."),
        ("Your goal is to", "Aim to"),
        ("#Given Prompt#", "{Seed prompt}"),
        ("#Created Prompt#", "{Rewritten prompt}"),
        ("Be concise. Be creative.", "Brief and inventive, please."),
        ("List", "Itemise"),
    ),
}

# Grading prompts in many formats (JSON verdicts, 1-5 scores, Output (a)/(b), "which is better",
# Likert, pairwise in prose), filled with real questions and answers of the split.
JUDGE_FORMATS = {
    "train": (
        JudgeFormat(
            "Compare two responses to the user question below and return JSON only, in the form "
            '{{"winner": "A" | "B", "reason": "..."}}.\n\nQuestion: {question}\n\nResponse A:\n{answer_a}\n\n'
            "Response B:\n{answer_b}",
            '{{"winner": "{ab}", "reason": "{why}"}}',
        ),
        JudgeFormat(
            "Rate the answer on a scale from 1 to 5 for helpfulness and accuracy. Reply with 'Score: N/5' "
            "and one sentence of justification.\n\nQuestion: {question}\nAnswer: {answer}",
            "Score: {score5}/5\n{why}",
        ),
        JudgeFormat(
            "Which output follows the instruction better? Answer with Output (a) or Output (b).\n\n"
            "# Instruction:\n{question}\n\n# Output (a):\n{answer_a}\n\n# Output (b):\n{answer_b}",
            "Output ({ab_lower})",
        ),
        JudgeFormat(
            "Here is a question and two candidate replies. Which is better, the first or the second? "
            "Explain briefly.\n\n{question}\n\nFirst reply: {answer_a}\n\nSecond reply: {answer_b}",
            "{why}\n\nThe {first_second} reply is better.",
        ),
        JudgeFormat(
            "Statement: 'The response fully and correctly answers the question.' Indicate your "
            "agreement: Strongly disagree, Disagree, Neutral, Agree, Strongly agree.\n\n"
            "Question: {question}\nResponse: {answer}",
            "{likert}. {why}",
        ),
    ),
    "dev": (
        JudgeFormat(
            'Evaluate the reply. Output a JSON object with keys "score" (integer 1-10) and "rationale".'
            "\n\nPrompt:\n{question}\n\nReply:\n{answer}",
            '{{"score": {score10}, "rationale": "{why}"}}',
        ),
        JudgeFormat(
            "Grade this answer from 1 (poor) to 5 (excellent).\nQ: {question}\nA: {answer}\nGrade:",
            "{score5}/5 - {why}",
        ),
        JudgeFormat(
            "Two assistants answered the same prompt. In a short paragraph, say which answer you prefer "
            "and why.\n\nPrompt: {question}\n\nAssistant A: {answer_a}\n\nAssistant B: {answer_b}",
            "I prefer Assistant {ab}'s answer. {why}",
        ),
        JudgeFormat(
            "On a five-point Likert scale (1 = strongly disagree, 5 = strongly agree), how much do you "
            "agree that the answer is factually correct?\n\nQuestion: {question}\nAnswer: {answer}",
            "{score5} ({likert}). {why}",
        ),
    ),
    "test": (
        JudgeFormat(
            "You are a strict reviewer. Read the task and both candidate answers, then respond with a "
            'JSON verdict: {{"preferred": "A" or "B", "confidence": 0-1, "notes": "..."}}.\n\n'
            "Task: {question}\n\n[Candidate A]\n{answer_a}\n\n[Candidate B]\n{answer_b}",
            '{{"preferred": "{ab}", "confidence": 0.{score10}, "notes": "{why}"}}',
        ),
        JudgeFormat(
            "How good is this answer? Give a score out of 5 in the form 'Score: X/5', then your reasons."
            "\n\n--- question ---\n{question}\n--- answer ---\n{answer}",
            "Score: {score5}/5\nReasons: {why}",
        ),
        JudgeFormat(
            "Select the better of the two outputs for the given input. Reply 'Output (a)' or 'Output (b)' "
            "and nothing else.\n\nInput: {question}\nOutput (a): {answer_a}\nOutput (b): {answer_b}",
            "Output ({ab_lower})",
        ),
        JudgeFormat(
            "Read both answers to the question and tell me which is better and in what way.\n\n"
            "Question: {question}\n\nAnswer 1: {answer_a}\n\nAnswer 2: {answer_b}",
            "Answer {one_two} is better: {why}",
        ),
        JudgeFormat(
            "Please rate your agreement with: 'This answer would satisfy an expert.' Options: strongly "
            "disagree / disagree / neither / agree / strongly agree.\n\nQuestion: {question}\n\n"
            "Answer: {answer}",
            "{likert}\n{why}",
        ),
        JudgeFormat(
            "Score the response for correctness, clarity and completeness, each from 1 to 10, and give "
            "an overall score as JSON.\n\nUser: {question}\n\nResponse: {answer}",
            '{{"correctness": {score10}, "clarity": {score10}, "completeness": {score10}, '
            '"overall": {score10}, "comment": "{why}"}}',
        ),
    ),
}

# Topic sweeps: natural questions generated over a topic list, one topic after another. The same
# phrasings reach casual users now and then (people ask "what is the difference between X and Y").
SWEEP_PHRASINGS = {
    "train": (
        "Explain {x}.",
        "What is the difference between {x} and {y}?",
        "How does {x} work?",
        "Give me an overview of {x}.",
        "What are the main ideas behind {x}?",
        "Why does {x} matter?",
    ),
    "dev": (
        "Can you explain {x} to me?",
        "How is {x} different from {y}?",
        "What should everyone know about {x}?",
        "Describe {x} in simple terms.",
        "{x} vs {y}: what are the key differences?",
    ),
    "test": (
        "What is {x}?",
        "Compare {x} and {y}.",
        "Break down {x} for a beginner.",
        "What are the pros and cons of {x}?",
        "Summarize what is known about {x}.",
        "In what ways do {x} and {y} differ?",
        "Teach me about {x}.",
    ),
}

# Topics come in related pairs, so that "the difference between X and Y" asks about neighbours.
SWEEP_TOPICS = {
    "train": (
        ("photosynthesis", "cellular respiration"), ("the French Revolution", "the American Revolution"),
        ("TCP", "UDP"), ("monetary policy", "fiscal policy"), ("CRISPR gene editing", "gene therapy"),
        ("plate tectonics", "continental drift"), ("public-key cryptography", "symmetric encryption"),
        ("supply and demand", "price elasticity"), ("the Roman Republic", "the Roman Empire"),
        ("black holes", "neutron stars"), ("natural selection", "genetic drift"),
        ("compound interest", "simple interest"), ("innate immunity", "adaptive immunity"),
        ("the water cycle", "the carbon cycle"), ("Keynesian economics", "monetarism"),
        ("neural networks", "decision trees"), ("the Renaissance", "the Baroque period"),
        ("hash tables", "binary search trees"), ("inflation", "deflation"), ("viruses", "bacteria"),
    ),
    "dev": (
        ("mitosis", "meiosis"), ("the Cold War", "the Korean War"), ("DNS", "DHCP"),
        ("stocks", "bonds"), ("stem cells", "somatic cells"), ("earthquakes", "tsunamis"),
        ("digital signatures", "message authentication codes"), ("opportunity cost", "sunk cost"),
        ("the Ottoman Empire", "the Safavid Empire"), ("red giants", "white dwarfs"),
        ("mutation", "gene flow"), ("amortization", "depreciation"), ("allergies", "autoimmune disorders"),
        ("weather", "climate"), ("behavioral economics", "classical economics"),
        ("random forests", "gradient boosting"), ("the Enlightenment", "the Romantic movement"),
        ("linked lists", "arrays"), ("recession", "depression"), ("vaccines", "antibiotics"),
    ),
    "test": (
        ("nitrogen fixation", "nitrification"), ("the Meiji Restoration", "the Opium Wars"),
        ("HTTP caching", "content delivery networks"), ("central banks", "commercial banks"),
        ("mRNA vaccines", "viral vector vaccines"), ("igneous rocks", "sedimentary rocks"),
        ("zero-knowledge proofs", "commitment schemes"), ("comparative advantage", "absolute advantage"),
        ("the Qing dynasty", "the Ming dynasty"), ("dark matter", "dark energy"), ("speciation", "extinction"),
        ("annuities", "life insurance"), ("epigenetics", "genetics"), ("nuclear fission", "nuclear fusion"),
        ("market failure", "government failure"), ("support vector machines", "logistic regression"),
        ("the Reformation", "the Counter-Reformation"), ("B-trees", "LSM trees"),
        ("stagflation", "hyperinflation"), ("serverless computing", "containers"),
    ),
}  # fmt: skip

TABLES: dict[str, Mapping[str, Sequence[object]]] = {
    "harvest_wrappers": HARVEST_WRAPPERS,
    "paraphrased_wrappers": PARAPHRASED_WRAPPERS,
    "translated_wrappers": TRANSLATED_WRAPPERS,
    "cot_systems": COT_SYSTEMS,
    "generation_rewordings": GENERATION_REWORDINGS,
    "judge_formats": JUDGE_FORMATS,
    "sweep_phrasings": SWEEP_PHRASINGS,
    "sweep_topics": SWEEP_TOPICS,
}


def texts_of(entry: object) -> tuple[str, ...]:
    """Every piece of wording in one table entry (for the split and cue-word checks)."""
    if isinstance(entry, str):
        return (entry,)
    if isinstance(entry, JudgeFormat):
        return (entry.prompt, entry.verdict)
    if isinstance(entry, tuple):
        return tuple(t for part in entry for t in texts_of(part))
    raise TypeError(f"unexpected wording entry {entry!r}")


@dataclass(frozen=True, slots=True)
class Wording:
    """The simulator's own adversary wording for one split."""

    harvest_wrappers: tuple[str, ...]
    paraphrased_wrappers: tuple[str, ...]
    translated_wrappers: tuple[tuple[str, str], ...]
    cot_systems: tuple[str, ...]
    generation_rewordings: tuple[tuple[str, str], ...]
    judge_formats: tuple[JudgeFormat, ...]
    sweep_phrasings: tuple[str, ...]
    sweep_topics: tuple[tuple[str, str], ...]


def wording_for(split: str) -> Wording:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    return Wording(
        harvest_wrappers=HARVEST_WRAPPERS[split],
        paraphrased_wrappers=PARAPHRASED_WRAPPERS[split],
        translated_wrappers=TRANSLATED_WRAPPERS[split],
        cot_systems=COT_SYSTEMS[split],
        generation_rewordings=GENERATION_REWORDINGS[split],
        judge_formats=JUDGE_FORMATS[split],
        sweep_phrasings=SWEEP_PHRASINGS[split],
        sweep_topics=SWEEP_TOPICS[split],
    )
