"""cot_extraction: the request tries to obtain the model's reasoning (an input signal).

Three things are told apart in `parts`, because they mean different things at account level:
a step-by-step demand (students and tutoring apps send these too), a request to reveal, repeat,
translate, encode or continue hidden reasoning (rarely innocent), and the system prompts and
templates that reasoning-distillation pipelines (R1, Bespoke/OpenThoughts, Orca) are known to send.
"""

from __future__ import annotations

from distillguard.events.call_view import CallView
from distillguard.signals.patterns import Pattern, PatternTable
from distillguard.signals.rules_and_model import RulesAndModelSignal

# what the model thinks with, in English: the object of a reveal request
_THOUGHT = (
    r"(?:chain[- ]of[- ]thoughts?|thought process|thinking process|reasoning(?: process| trace| tokens| steps)?|"
    r"thinking|thoughts|scratch ?pad|inner monologue|internal monologue|deliberation|<think>|think block|cot)"
)
_HIDDEN = r"(?:hidden|internal|inner|private|secret|raw|full|complete|entire|original|unfiltered|verbatim|actual|real)"
_REVEAL_VERB = (
    r"(?:reveal|show|print|output|repeat|display|share|dump|disclose|expose|leak|give me|tell me|write (?:out|down)|"
    r"copy|paste|reproduce|recite|transcribe|translate|encode|spell out|include|return|provide|let me see|"
    r"render|restate|rewrite|write it out|wrap|narrate|list)"
)

PATTERNS: tuple[Pattern, ...] = (
    # --- step-by-step demands (tutoring apps send these too: weight below the flag range alone)
    Pattern("step_by_step.en", "step_by_step", 0.45, r"\bstep[- ]by[- ]step\b"),
    Pattern(
        "show_work.en",
        "step_by_step",
        0.4,
        r"\bshow (?:all |me )?(?:of )?(?:your|the|all)? ?(?:work(?:ing)?|steps|intermediate steps|calculations|derivation)\b",
    ),
    Pattern(
        "explain_reasoning.en",
        "step_by_step",
        0.35,
        r"\b(?:explain|justify|walk me through) (?:your|the|each) (?:reasoning|steps|thought)",
    ),
    Pattern(
        "think_carefully.en",
        "step_by_step",
        0.35,
        r"\b(?:let'?s|please|first) think (?:step|carefully|through|about this)|\bthink (?:it )?through (?:carefully|step)",
    ),
    Pattern("reason_through.en", "step_by_step", 0.4, r"\breason (?:step|carefully|through|it out|out loud)"),
    Pattern("chain_of_thought.en", "step_by_step", 0.45, r"\bchain[- ]of[- ]thought\b|\bcot prompting\b"),
    Pattern(
        "step_by_step.zh",
        "step_by_step",
        0.45,
        r"一步一步|一步步|逐步|分步(?:骤)?(?:解|计算|推理|思考|回答)|详细(?:的)?(?:解题)?步骤",
    ),
    Pattern(
        "step_by_step.es",
        "step_by_step",
        0.45,
        r"\bpaso a paso\b|\bmuestra (?:todo )?tu (?:trabajo|razonamiento)",
    ),
    Pattern(
        "step_by_step.fr",
        "step_by_step",
        0.45,
        r"\bétape par étape\b|\bmontre[rz]? (?:ton|votre) raisonnement",
    ),
    Pattern("step_by_step.de", "step_by_step", 0.45, r"\bschritt für schritt\b|\bschrittweise\b"),
    Pattern("step_by_step.ru", "step_by_step", 0.45, r"шаг за шагом|пошагово|по шагам"),
    Pattern("step_by_step.ja", "step_by_step", 0.45, r"ステップバイステップ|段階的に|順を追って|一歩ずつ"),
    Pattern("step_by_step.ko", "step_by_step", 0.45, r"단계별로|차근차근|한 단계씩"),
    Pattern("step_by_step.pt", "step_by_step", 0.45, r"\bpasso a passo\b|\betapa por etapa\b"),
    Pattern("step_by_step.ar", "step_by_step", 0.45, r"خطوة بخطوة"),
    # --- requests to reveal, repeat, translate, encode or continue hidden reasoning
    Pattern(
        "reveal_reasoning.en",
        "reveal_hidden",
        0.9,
        rf"\b{_REVEAL_VERB}\b[^.?!\n]{{0,40}}\b(?:your|the|its|model'?s)\s+(?:{_HIDDEN}\s+)?{_THOUGHT}",
    ),
    Pattern(
        "hidden_reasoning.en",
        "reveal_hidden",
        0.85,
        rf"\b{_HIDDEN}\s+(?:chain[- ]of[- ]thought|thought process|thinking process|reasoning|thoughts|thinking|scratch ?pad|monologue|deliberation)\b",
    ),
    Pattern(
        "continue_reasoning.en",
        "reveal_hidden",
        0.85,
        r"\b(?:continue|resume|finish|complete) (?:your|the|from where) [^.?!\n]{0,20}(?:reasoning|thinking|thought|<think>)",
    ),
    Pattern(
        "think_tags.en",
        "reveal_hidden",
        0.8,
        r"</?(?:think|thinking|thoughts?|scratchpad|reasoning|inner_monologue)>|<\|begin_of_thought\|>|\bthink tags?\b",
    ),
    Pattern(
        "encode_reasoning.en",
        "reveal_hidden",
        0.85,
        rf"\b(?:base64|rot13|hex|morse|pig latin|leetspeak|json|reverse order|backwards)\b[^.\n]{{0,40}}\b{_THOUGHT}|{_THOUGHT}[^.\n]{{0,40}}\b(?:base64|rot13|hex|morse)\b",
    ),
    Pattern(
        "before_answer.en",
        "reveal_hidden",
        0.7,
        r"\b(?:everything|exactly what) you (?:thought|reasoned|considered) (?:before|while)|\bwhat (?:were|are) you thinking (?:before|while)",
    ),
    Pattern(
        "reveal.zh",
        "reveal_hidden",
        0.9,
        r"(?:思考过程|推理过程|思维链|思考链|推理链|思维过程|内部推理|内心独白|隐藏的?推理|完整的?推理|原始推理)",
    ),
    Pattern(
        "reveal.es",
        "reveal_hidden",
        0.9,
        r"\b(?:razonamiento|pensamiento)s? (?:interno|oculto|completo|privado)s?|\bcadena de pensamiento|\bproceso de pensamiento",
    ),
    Pattern(
        "reveal.fr",
        "reveal_hidden",
        0.9,
        r"\braisonnement (?:interne|caché|complet|privé)|\bchaîne de (?:pensée|raisonnement)|\bprocessus de (?:réflexion|pensée)",
    ),
    Pattern(
        "reveal.de",
        "reveal_hidden",
        0.9,
        r"\b(?:internen?|versteckten?|verborgenen?|vollständigen?) (?:gedanken|überlegungen|denkprozess|gedankengang)|\bgedankenkette|\bdenkprozess",
    ),
    Pattern(
        "reveal.ru",
        "reveal_hidden",
        0.9,
        r"ход(?:ом)? (?:своих |твоих |ваших )?мысл|цепочк\w* (?:рассуждени|мысл)|(?:внутренн|скрыт|полн)\w* рассуждени",
    ),
    Pattern(
        "reveal.ja", "reveal_hidden", 0.9, r"思考過程|推論過程|思考の過程|内部の?推論|思考の連鎖|隠れた推論"
    ),
    Pattern("reveal.ko", "reveal_hidden", 0.9, r"사고 ?과정|추론 ?과정|내부 ?추론|생각의 ?사슬|숨겨진 ?추론"),
    Pattern(
        "reveal.pt",
        "reveal_hidden",
        0.9,
        r"\braciocínio (?:interno|oculto|completo|privado)|\bcadeia de (?:pensamento|raciocínio)|\bprocesso de (?:pensamento|raciocínio)",
    ),
    Pattern(
        "reveal.ar",
        "reveal_hidden",
        0.9,
        r"سلسلة (?:التفكير|الأفكار)|عملية التفكير|تفكيرك الداخلي|الاستدلال الداخلي|أفكارك الداخلية",
    ),
    Pattern(
        "unabridged",
        "reveal_hidden",
        0.35,  # weak alone ("translate without shortening it"); raises a reveal request it accompanies
        r"\b(?:complete and unabridged|unabridged|do not (?:shorten|summari[sz]e|abridge|truncate) it|without (?:shortening|summari[sz]ing|abridging|truncating|cuts))\b"
        r"|sin recortar|sans (?:coupure|raccourcir|résumer)|ungekürzt|sem cortes|без сокращений|省略せず|생략 없이|不要省略|دون اختصار",
    ),
    # --- pretexts that wrap reveal requests (weak alone: they are also how red-teamers talk)
    Pattern(
        "dataset_pretext.en",
        "pretext",
        0.5,
        r"\bfor (?:a|my|our|the) (?:training )?(?:dataset|data ?set|training data|training set|corpus|fine-?tun\w*|distillation)\b",
    ),
    Pattern(
        "roleplay_pretext.en",
        "pretext",
        0.35,
        r"\b(?:pretend|imagine) (?:you are|you're|to be)|\byou are now (?:in )?(?:debug|developer|dev|maintenance) mode|\b(?:debug|developer) mode (?:enabled|activated|on)\b",
    ),
    Pattern(
        "authority_pretext.en",
        "pretext",
        0.35,
        r"\bi(?:'m| am) (?:a|an|the) (?:developer|engineer|researcher|admin\w*) (?:at|of|from|working on) (?:openai|anthropic|google|deepseek|this model)",
    ),
    Pattern("dataset_pretext.zh", "pretext", 0.5, r"(?:用于|作为)(?:训练|数据集|微调)|训练数据"),
    # --- system prompts and templates of known reasoning-distillation pipelines
    Pattern(
        "r1_boxed_template",
        "distill_template",
        0.9,
        r"reason step by step,? and put your final answer within \\boxed|return your final response within \\boxed",
    ),
    Pattern(
        "sky_t1_bespoke_system",
        "distill_template",
        0.95,
        r"systematic long thinking process|comprehensive cycle of\s+analysis|<\|begin_of_solution\|>|structure your response into two main sections:? thought and solution",
    ),
    Pattern(
        "orca_system.think_justify",
        "distill_template",
        0.8,
        r"think step-by- ?step and justify your (?:steps|answer)",
    ),
    Pattern(
        "orca_system.user_will_you_give",
        "distill_template",
        0.8,
        r"user will you give you a (?:task|question)",
    ),
    Pattern(
        "orca_system.five_year_old",
        "distill_template",
        0.55,
        r"think like you are answering to a five year old",
    ),
    Pattern(
        "orca_system.search_outside",
        "distill_template",
        0.7,
        r"so user don.t need to search outside to understand the answer",
    ),
    Pattern(
        "orca_system.explain_wrong",
        "distill_template",
        0.6,
        r"first output the correct answer\(s\)\. then explain why other answers are wrong",
    ),
    Pattern(
        "orca_system.guidelines",
        "distill_template",
        0.6,
        r"explain in simple steps what the task is asking|break the definition into small parts|explain how you used the definition to come up with the answer",
    ),
    Pattern(
        "orca_system.detailed_long", "distill_template", 0.5, r"you must generate a detailed and long answer"
    ),
)


class CotExtraction(RulesAndModelSignal):
    name = "cot_extraction"
    version = "1"
    description = (
        "The request tries to obtain the model's reasoning: step-by-step demands, R1/Bespoke/Orca "
        "distillation system prompts and templates, or requests to reveal, repeat, translate, "
        "encode or continue hidden reasoning (with role-play and dataset pretexts), in several languages."
    )
    known_false_positives = (
        "students and tutoring apps asking for step-by-step help (part 'step_by_step' only)",
        "prompt engineers discussing chain-of-thought prompting",
        "researchers asking how reasoning models work",
    )
    reads = "input"
    table = PatternTable(PATTERNS)

    def rule_score(self, call: CallView, text: str) -> tuple[float, dict[str, float], list[str], list[str]]:
        score, parts, matched, adjustments = super().rule_score(call, text)
        pretext = parts["pretext"]
        strongest = max(parts["reveal_hidden"], parts["step_by_step"], parts["distill_template"])
        if pretext > 0.0 and strongest > 0.0:
            # a dataset or role-play pretext wrapped around a reasoning request is the harvesting
            # pattern; either alone is common in ordinary traffic
            combined = round(1.0 - (1.0 - strongest) * (1.0 - pretext), 4)
            adjustments.append(f"pretext with a reasoning request: {strongest:.2f} -> {combined:.2f}")
            score = max(score, combined)
        return score, parts, matched, adjustments
