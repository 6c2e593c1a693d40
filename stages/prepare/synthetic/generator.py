"""Sample synthetic Q&A records from the domain fact tables, with whole paraphrase templates held out.

    from stages.prepare.synthetic import generate_synthetic
    records = generate_synthetic(["healthcare", "legal"], num_samples=600, seed=42)
    records = generate_synthetic(["legal"], num_samples=171, seed=42, held_out_templates=2, test_questions=100)

How sampling works, per domain:
- Every kind (fact field) has several paraphrase templates; its last `held_out_templates` are used only for
  held-out records (held_out=True) and the others only for training records, so the test split asks known
  facts in phrasings the model never saw.
- The test split holds `test_questions` held-out records per domain on top of the `num_samples` training ones
  (or, with test_questions=None, round(num_samples * test_fraction) of them). Held-out questions ask as many
  different facts as training can teach: every fact once before any fact twice, so the questions are close to
  independent samples. With test_questions set, asking a (fact, template) pair twice, or asking more facts than
  training records can teach, is an error instead of a silent repeat.
- Training records are drawn without replacement over (fact, template) pairs and only cycle (repeat) once a
  domain asks for more records than there are pairs. One training phrasing of each fact that a held-out
  record asks about comes first, so the test split measures rephrasing, not unseen facts.
- Held-out facts (`held_out_facts`, a share of each domain's static facts, stratified by kind) are never
  taught: no training, validation or paraphrase-test record asks them. Each is asked `questions_per_fact`
  times (distinct templates) in records marked `unseen_fact=True`, the `test_facts` split, which measures what
  the model cannot have learned (and what retrieval from the fact sheets adds). `validation_held_out_facts`
  holds out another share the same way (records also marked `validation_fact=True`, the `validation_facts`
  split) for choosing retrieval settings without looking at test_facts.
- Finance also draws computed questions (interest, loans, ROI, ...): about half the records, more when the
  definitions run out. Computed instructions never repeat; held-out ones use held-out templates and
  parameters no training record uses.
Everything comes from `random.Random` seeded with strings built from `seed` (string seeds are hashed with
SHA-512, so results do not depend on PYTHONHASHSEED or the platform).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from stages.errors import StageError
from stages.prepare.records import make_record
from stages.prepare.synthetic.facts import QuestionKind, StaticFact
from stages.prepare.synthetic.finance import FINANCE_FACTS, FINANCE_KINDS
from stages.prepare.synthetic.finance_calc import CALCULATIONS
from stages.prepare.synthetic.healthcare import HEALTHCARE_FACTS, HEALTHCARE_KINDS
from stages.prepare.synthetic.legal import LEGAL_FACTS, LEGAL_KINDS

SUPPORTED_DOMAINS = ("healthcare", "legal", "finance")
FACTS: dict[str, list[StaticFact]] = {"healthcare": HEALTHCARE_FACTS, "legal": LEGAL_FACTS, "finance": FINANCE_FACTS}
KINDS: dict[str, list[QuestionKind]] = {
    "healthcare": list(HEALTHCARE_KINDS.values()),
    "legal": list(LEGAL_KINDS.values()),
    "finance": list(FINANCE_KINDS.values()) + [calc.kind for calc in CALCULATIONS.values()],
}
# Share of finance records that are computed questions (the rest ask the terms' definitions, examples and
# why they matter).
FINANCE_COMPUTED_SHARE = 0.5
# Re-draws allowed to find an unused computed question; the space is >= 385 questions per kind (rule of 72)
# and ~10^5 for most, so this only runs out (and then repeats one) for huge num_samples.
_MAX_REDRAWS = 200


@dataclass(frozen=True)
class Question:
    instruction: str
    output: str
    fact_id: str
    template_id: str
    held_out: bool
    answer_type: str = "text"
    numeric_answer: float | None = None


def template_indices(kind: QuestionKind, held_out_templates: int, held_out: bool) -> range:
    split = len(kind.templates) - held_out_templates
    return range(split, len(kind.templates)) if held_out else range(split)


def spread(total: int, parts: int) -> list[int]:
    """Split `total` as evenly as possible; the first `total % parts` parts get one more."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _take_cycling(first_pass: list, count: int, rng: random.Random) -> list:
    """`count` items: `first_pass` in order, then freshly shuffled passes over the same items if needed."""
    taken = list(first_pass[:count])
    while len(taken) < count:
        again = list(first_pass)
        rng.shuffle(again)
        taken.extend(again[:count - len(taken)])
    return taken


def _static_question(fact: StaticFact, template_index: int, held_out: bool) -> Question:
    return Question(fact.question(template_index), fact.answer, fact.fact_id,
                    fact.kind.template_id(template_index), held_out)


def pick_unseen_facts(facts: list[StaticFact], share: float, rng: random.Random,
                      exclude: frozenset[str] = frozenset()) -> set[str]:
    """Fact ids of `share` of the facts of each kind (at least one per kind when share > 0), seeded, drawn from
    the facts not in `exclude` (the count is a share of all the kind's facts)."""
    by_kind: dict[str, list[str]] = {}
    for fact in facts:
        by_kind.setdefault(fact.kind.kind_id, []).append(fact.fact_id)
    picked: set[str] = set()
    for kind_id in sorted(by_kind):
        ids = sorted(by_kind[kind_id])
        free = [i for i in ids if i not in exclude]
        count = max(1, round(len(ids) * share)) if share > 0 and len(ids) > 1 else 0
        picked.update(rng.sample(free, min(count, max(len(free) - 1, 0))))  # keep one fact of each kind taught
    return picked


def unseen_fact_questions(facts: list[StaticFact], per_fact: int, rng: random.Random) -> list[Question]:
    """Each fact asked `per_fact` times with distinct templates (any template: none of them taught it)."""
    questions = []
    for fact in facts:
        for t in rng.sample(range(len(fact.kind.templates)), min(per_fact, len(fact.kind.templates))):
            questions.append(_static_question(fact, t, True))
    return questions


def held_out_pairs(facts: list[StaticFact], n_held: int, n_train: int, held_out_templates: int,
                   rng: random.Random) -> list[tuple[StaticFact, int]]:
    """`n_held` (fact, held-out template) pairs in rounds: each chosen fact once, then each a second time, ...

    Questions about distinct facts are closer to independent than two phrasings of one fact, so a test split of
    a given size measures more. Each asked fact takes one of the `n_train` training records (see
    static_questions), so at most max(n_train, ceil(n_held / held_out_templates)) facts are asked.
    """
    if n_held == 0 or held_out_templates == 0:
        return []
    order = list(facts)
    rng.shuffle(order)
    chosen = order[:max(n_train, -(-n_held // held_out_templates))]
    templates = [rng.sample(template_indices(f.kind, held_out_templates, True), held_out_templates) for f in chosen]
    rounds = [(fact, ts[i]) for i in range(held_out_templates) for fact, ts in zip(chosen, templates, strict=True)]
    return _take_cycling(rounds, n_held, rng)


def static_questions(facts: list[StaticFact], n_train: int, n_held: int, held_out_templates: int,
                     rng: random.Random) -> list[Question]:
    held = held_out_pairs(facts, n_held, n_train, held_out_templates, rng)
    train_pool = [(f, t) for f in facts for t in template_indices(f.kind, held_out_templates, False)]
    rng.shuffle(train_pool)
    # Teach each fact the test split asks about at least once (in another phrasing) before the rest.
    asked = {fact.fact_id for fact, _ in held}
    first, rest, taught = [], [], set()
    for fact, t in train_pool:
        if fact.fact_id in asked and fact.fact_id not in taught:
            first.append((fact, t))
            taught.add(fact.fact_id)
        else:
            rest.append((fact, t))
    train = _take_cycling(first + rest, n_train, rng)
    return ([_static_question(f, t, False) for f, t in train]
            + [_static_question(f, t, True) for f, t in held])


def computed_questions(count: int, held_out: bool, held_out_templates: int, rng: random.Random,
                       used_instructions: set[str], training_params: set) -> list[Question]:
    """`count` computed finance questions, cycling evenly through the calculation kinds in shuffled rounds.

    No instruction repeats one in `used_instructions` (updated here). Training calls add their parameters to
    `training_params`; held-out calls avoid them, so a test question never reuses training numbers.
    """
    names = list(CALCULATIONS)
    questions = []
    for i in range(count):
        if i % len(names) == 0:
            rng.shuffle(names)
        name = names[i % len(names)]
        calc = CALCULATIONS[name]
        fallback = None
        for _ in range(_MAX_REDRAWS):
            computed = calc.draw(rng)
            t = rng.choice(template_indices(calc.kind, held_out_templates, held_out))
            instruction = computed.question(calc.kind, t)
            params = (name, tuple(sorted(computed.params.items())))
            if instruction not in used_instructions:
                if not (held_out and params in training_params):
                    break
                fallback = fallback or (computed, t, instruction, params)
        else:
            # Fresh numbers ran out (small kinds, huge num_samples): at least keep the instruction new.
            if fallback is not None:
                computed, t, instruction, params = fallback
        used_instructions.add(instruction)
        if not held_out:
            training_params.add(params)
        questions.append(Question(instruction, computed.answer, f"finance.calc.{name}",
                                  calc.kind.template_id(t), held_out, "numeric", computed.numeric_answer))
    return questions


def static_counts(domain: str, facts: list[StaticFact], n_train: int, n_held: int,
                  held_out_templates: int) -> tuple[int, int]:
    """How many of a domain's training and held-out records ask static facts (the rest: computed finance)."""
    if domain != "finance":
        return n_train, n_held
    # Computed questions take their share, plus whatever the static facts cannot cover without repeating (or,
    # held out, without asking more facts than the static training records teach).
    n_train_pairs = sum(len(template_indices(f.kind, held_out_templates, False)) for f in facts)
    n_held_pairs = sum(len(template_indices(f.kind, held_out_templates, True)) for f in facts)
    static_train = min(n_train - round(n_train * FINANCE_COMPUTED_SHARE), n_train_pairs)
    return static_train, min(n_held - round(n_held * FINANCE_COMPUTED_SHARE), n_held_pairs,
                             static_train * held_out_templates)


def check_test_questions(domain: str, facts: list[StaticFact], n_train: int, n_held: int,
                         held_out_templates: int) -> None:
    """data.test_questions must be reachable without asking a (fact, template) pair twice, and without asking
    a fact that no training record teaches."""
    static_train, static_held = static_counts(domain, facts, n_train, n_held, held_out_templates)
    distinct = len(facts) * held_out_templates
    if static_held > distinct:
        raise StageError(f"data.test_questions={n_held} is more than the {distinct} distinct held-out questions "
                         f"{domain} has ({len(facts)} taught facts x data.held_out_templates={held_out_templates}); "
                         "lower data.test_questions or raise data.held_out_templates")
    needed = -(-static_held // held_out_templates) if static_held else 0
    if needed > static_train:
        raise StageError(f"data.test_questions={n_held} asks about at least {needed} {domain} facts but only "
                         f"{static_train} training records of {domain} can teach them; raise data.num_samples or "
                         "data.held_out_templates, or lower data.test_questions")


def domain_questions(domain: str, n_train: int, n_held: int, held_out_templates: int,
                     rng: random.Random, unseen: set[str] = frozenset()) -> list[Question]:
    facts = [f for f in FACTS[domain] if f.fact_id not in unseen]
    static_train, static_held = static_counts(domain, facts, n_train, n_held, held_out_templates)
    static = static_questions(facts, static_train, static_held, held_out_templates, rng)
    if domain != "finance":
        return static
    used_instructions: set[str] = set()
    training_params: set = set()
    return (static
            + computed_questions(n_train - static_train, False, held_out_templates, rng, used_instructions,
                                 training_params)
            + computed_questions(n_held - static_held, True, held_out_templates, rng, used_instructions,
                                 training_params))


def check_arguments(domains: list[str], num_samples: int, held_out_templates: int, test_fraction: float,
                    held_out_facts: float = 0.0, questions_per_fact: int = 2,
                    validation_held_out_facts: float = 0.0, test_questions: int | None = None) -> None:
    if not domains:
        raise StageError(f"no synthetic domain given; list one or more of: {', '.join(SUPPORTED_DOMAINS)}")
    for domain in domains:
        if domain not in SUPPORTED_DOMAINS:
            raise StageError(f"unknown synthetic domain {domain!r} in domain.domains; supported domains: "
                             f"{', '.join(SUPPORTED_DOMAINS)}")
    if len(set(domains)) != len(domains):
        raise StageError(f"domain.domains lists a domain twice ({', '.join(domains)}); list each once")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise StageError(f"data.num_samples must be a whole number >= 1, got {num_samples!r}")
    if not 0 <= held_out_facts <= 0.5:
        raise StageError(f"data.held_out_facts must be a share between 0 and 0.5 of each domain's facts, got "
                         f"{held_out_facts!r}")
    if not 0 <= validation_held_out_facts <= 0.5 - held_out_facts:
        raise StageError(f"data.validation_held_out_facts must be a share between 0 and {0.5 - held_out_facts:g} "
                         f"(0.5 minus data.held_out_facts) of each domain's facts, got {validation_held_out_facts!r}")
    if held_out_facts > 0 and not 1 <= questions_per_fact <= 4:
        raise StageError(f"data.questions_per_held_out_fact must be 1..4, got {questions_per_fact!r}")
    if test_questions is not None and (isinstance(test_questions, bool) or not isinstance(test_questions, int)
                                       or test_questions < 0):
        raise StageError(f"data.test_questions must be a whole number >= 0 of test questions per domain, or null "
                         f"for the prepare.split.test share of data.num_samples; got {test_questions!r}")
    if test_questions is None and not 0 <= test_fraction < 1:
        raise StageError(f"the test fraction (prepare.split.test) must be >= 0 and < 1, got {test_fraction!r}")
    fewest = min(len(kind.templates) for domain in domains for kind in KINDS[domain])
    if not 0 <= held_out_templates < fewest:
        raise StageError(f"data.held_out_templates must be between 0 and {fewest - 1} (each question kind has "
                         f"{fewest} paraphrases and training needs at least one), got {held_out_templates!r}")
    asks_test = round(num_samples * test_fraction) > 0 if test_questions is None else test_questions > 0
    if held_out_templates == 0 and asks_test:
        raise StageError("data.held_out_templates is 0 but a test split is requested (data.test_questions or "
                         "prepare.split.test); set it to 1 or more so test questions use phrasings unseen in "
                         "training")


def generate_synthetic(domains: list[str], num_samples: int, seed: int, held_out_templates: int = 1,
                       test_fraction: float = 0.1, system_prompt: str | None = None, held_out_facts: float = 0.0,
                       questions_per_fact: int = 2, validation_held_out_facts: float = 0.0,
                       test_questions: int | None = None) -> list[dict]:
    """`num_samples` training records spread evenly over `domains`, plus `test_questions` held-out records
    (held_out=True, phrased with held-out templates only) per domain. With test_questions=None the held-out
    records are instead round(num_samples * test_fraction) of the num_samples (spread over domains). With
    `held_out_facts` > 0, records asking the held-out facts (unseen_fact=True, also held_out=True) come on top;
    with `validation_held_out_facts` > 0, so do those of the validation facts (also validation_fact=True).

    Same arguments give a byte-identical list; another seed gives another selection and order.
    """
    check_arguments(domains, num_samples, held_out_templates, test_fraction, held_out_facts, questions_per_fact,
                    validation_held_out_facts, test_questions)
    counts = spread(num_samples, len(domains))
    if test_questions is None:
        held_counts = spread(round(num_samples * test_fraction), len(domains))
        counts = [count - n_held for count, n_held in zip(counts, held_counts, strict=True)]
    else:
        held_counts = [test_questions] * len(domains)
    records = []
    for domain, n_train, n_held in zip(domains, counts, held_counts, strict=True):
        rng = random.Random(f"synthetic:{seed}:{domain}")
        # its own generator, so held_out_facts=0 draws exactly what it drew before the option existed
        unseen_rng = random.Random(f"synthetic:{seed}:{domain}:unseen")
        unseen = pick_unseen_facts(FACTS[domain], held_out_facts, unseen_rng)
        unseen_questions = unseen_fact_questions([f for f in FACTS[domain] if f.fact_id in unseen],
                                                 questions_per_fact, unseen_rng)
        # again its own generator, so test_facts stays the same draw whatever this share is
        validation_rng = random.Random(f"synthetic:{seed}:{domain}:unseen-validation")
        validation = pick_unseen_facts(FACTS[domain], validation_held_out_facts, validation_rng, frozenset(unseen))
        validation_questions = unseen_fact_questions([f for f in FACTS[domain] if f.fact_id in validation],
                                                     questions_per_fact, validation_rng)
        if test_questions is not None:
            check_test_questions(domain, [f for f in FACTS[domain] if f.fact_id not in unseen | validation],
                                 n_train, n_held, held_out_templates)
        questions = domain_questions(domain, n_train, n_held, held_out_templates, rng, unseen | validation)
        tagged = ([(q, {}) for q in questions] + [(q, {"unseen_fact": True}) for q in unseen_questions]
                  + [(q, {"unseen_fact": True, "validation_fact": True}) for q in validation_questions])
        for q, extra in tagged:
            records.append(make_record(
                domain, q.instruction, q.output, source="synthetic", input_text="", system_prompt=system_prompt,
                fact_id=q.fact_id, template_id=q.template_id, held_out=q.held_out, answer_type=q.answer_type,
                numeric_answer=q.numeric_answer, **extra))
    random.Random(f"synthetic:{seed}:order").shuffle(records)
    return records
