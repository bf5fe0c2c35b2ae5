"""Benign text the simulator writes itself: app and tutoring system prompts, the batch customer's
ticket template and its fillings, follow-up turns.

The adversary's own wording (wrappers, paraphrases, translations, judge formats, topic sweeps) is in
`wording.py`, split train / dev / test. Everything else the simulator sends is real corpus text.
"""

from __future__ import annotations

import random

APP_SYSTEM_PROMPTS = (
    "You are the in-app assistant of Wayfarer, a travel booking app. Help users plan trips, compare "
    "options and understand booking rules. Be concise and friendly. Never invent prices.",
    "You are Quill, a writing assistant inside a note-taking app. Help the user draft, shorten and "
    "polish their text. Keep the user's voice.",
    "You are a customer support assistant for Brightline Energy. Answer questions about bills, "
    "meter readings and tariffs. If you are unsure, tell the user to contact support.",
    "You are a helpful shopping assistant for an online electronics store. Recommend products based "
    "on the user's needs and budget, and explain trade-offs plainly.",
    "You are a recipe and meal-planning assistant. Suggest recipes that fit the user's ingredients, "
    "diet and time, with clear steps.",
    "You are an HR policy assistant for employees of a mid-sized company. Answer questions about leave, "
    "benefits and expenses in plain language.",
    "You are a coding help bot inside an online IDE. Give short, correct answers with code samples.",
    "You are a friendly language-learning companion. Chat with the learner and gently correct mistakes.",
)

TUTORING_SYSTEM_PROMPTS = (
    "You are Mathly, a patient math tutor for students aged 11 to 15. Explain the solution step by "
    "step in simple words, check each step, and end with the final answer on its own line.",
    "You are a homework helper. Walk the student through the problem one step at a time, show the "
    "arithmetic, and finish with 'Answer:' followed by the result.",
    "You are a tutor in a learning app. Break the word problem into small steps, explain why each "
    "step is taken, and give the final answer clearly at the end.",
)

# The legitimate batch customer's one template (support-ticket triage) and what fills it.
TICKET_TEMPLATE = (
    "Classify the following customer support ticket.\n"
    'Return JSON with keys "category" (one of: billing, shipping, technical, account, returns, '
    'other), "priority" (low, medium, high) and "sentiment" (negative, neutral, positive).\n\n'
    "Ticket #{ticket_id}\nSubject: {subject}\nMessage: {body}"
)
TICKET_SYSTEM = "You are a precise classifier. Answer with JSON only."

_TICKET_PRODUCTS = (
    "wireless earbuds", "the annual plan", "my order", "the router", "a gift card", "the smart "
    "thermostat", "the mobile app", "my subscription", "the laptop stand", "the coffee grinder",
    "the fitness tracker", "the premium account", "the desk lamp", "my invoice", "the phone case",
)  # fmt: skip
_TICKET_ISSUES = (
    ("billing", "I was charged twice for {p} this month"),
    ("billing", "the invoice for {p} shows the wrong VAT number"),
    ("shipping", "{p} still has not arrived after {n} days"),
    ("shipping", "the tracking page for {p} has not updated since {weekday}"),
    ("technical", "{p} keeps disconnecting every few minutes"),
    ("technical", "after the last update {p} crashes on start"),
    ("account", "I cannot log in since I changed my email address"),
    ("account", "please delete my account and all data linked to {p}"),
    ("returns", "I want to return {p}, it arrived damaged"),
    ("returns", "the refund for {p} has not reached my card after {n} days"),
    ("other", "do you ship {p} to Norway?"),
    ("other", "is there a student discount on {p}?"),
)
_TICKET_OPENERS = ("Hi,", "Hello,", "Hi team,", "Good morning,", "", "Dear support,", "Hey,")
_TICKET_CLOSERS = (
    "Thanks.", "Please help asap!!", "Regards, {name}", "Thank you in advance.", "", "This is really "
    "frustrating.", "Appreciate it.", "Order ref {ref}.",
)  # fmt: skip
_NAMES = (
    "Maria",
    "Tom",
    "Aisha",
    "Kenji",
    "Lucas",
    "Priya",
    "Olga",
    "Sam",
    "Fatima",
    "Jonas",
    "Mei",
    "Diego",
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def support_ticket(rng: random.Random) -> tuple[str, str]:
    """(filled template, true category) for one synthetic support ticket."""
    category, issue = rng.choice(_TICKET_ISSUES)
    product = rng.choice(_TICKET_PRODUCTS)
    body_core = issue.format(p=product, n=rng.randint(3, 21), weekday=rng.choice(_WEEKDAYS))
    body = " ".join(
        part
        for part in (
            rng.choice(_TICKET_OPENERS),
            body_core[0].upper() + body_core[1:] + ".",
            rng.choice(_TICKET_CLOSERS).format(
                name=rng.choice(_NAMES), ref=f"A{rng.randint(100000, 999999)}"
            ),
        )
        if part
    )
    subject = rng.choice((body_core.split(" ")[0:6], [category.title(), "issue"]))
    text = TICKET_TEMPLATE.format(ticket_id=rng.randint(100000, 999999), subject=" ".join(subject), body=body)
    return text, category


FOLLOW_UPS = (
    "Can you make that shorter?",
    "Thanks! Can you give me an example?",
    "Explain that like I'm five.",
    "What are the downsides?",
    "Can you put that in a table?",
    "ok and what if I don't have a car?",
    "Could you rewrite it in a more formal tone?",
    "Why is that?",
    "Great, now summarise it in 3 bullet points.",
    "That's not quite what I meant. I need something cheaper.",
    "Can you translate that into Spanish?",
    "and for a family of four?",
    "Are you sure? I read somewhere the opposite.",
    "Give me 5 more ideas like that.",
    "perfect thanks",
)

CODING_FOLLOW_UPS = (
    "That throws TypeError: 'NoneType' object is not subscriptable. How do I fix it?",
    "Can you add type hints and a docstring?",
    "Now write unit tests for it with pytest.",
    "It works but it's slow on 1M rows. Any faster way?",
    "Can you convert this to TypeScript?",
    "I get a CORS error in the browser console when calling this endpoint.",
    "Refactor it so the database connection is injected.",
    "What does the second line do exactly?",
    'The build fails with \'cannot find module\'. Here\'s my tsconfig: {"module": "esnext"}',
    "Make it async.",
    "Add error handling for when the file doesn't exist.",
    "How would I deploy this with Docker?",
)

SANCTIONED_SYSTEM = (
    "You are generating training data for an approved distillation programme (agreement DP-{n}). "
    "Answer fully and show your reasoning."
)
