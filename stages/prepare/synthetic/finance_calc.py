"""Computed finance questions: random parameters in, question + exact reference answer out.

    rng = random.Random(0)
    q = CALCULATIONS["loan_payment"].draw(rng)
    q.fields      # {"principal": "$200000", "rate": "6%", "term": "30 years", ...}, fills any template
    q.answer      # "... the monthly payment is $1199.10."
    q.numeric_answer   # 1199.1

Every answer ends with its result, so the LAST number in the answer text is `numeric_answer` (evaluation can
extract and compare it). Amounts are written without thousands separators for the same reason.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from stages.prepare.synthetic import finance_math as fm
from stages.prepare.synthetic.facts import QuestionKind


@dataclass(frozen=True)
class ComputedQuestion:
    params: dict[str, Decimal | int]  # raw inputs, so a test can recompute the answer independently
    fields: dict[str, str]  # formatted inputs for the templates
    answer: str
    numeric_answer: float

    def question(self, kind: QuestionKind, template_index: int) -> str:
        return kind.templates[template_index].format(**self.fields)


@dataclass(frozen=True)
class Calculation:
    kind: QuestionKind
    draw: Callable[[random.Random], ComputedQuestion]


def money(value: Decimal) -> str:
    """$1628.89 for results; whole input amounts read as $10000."""
    if value == value.to_integral_value():
        return f"${int(value)}"
    return f"${fm.to_cents(value)}"


def money_cents(value: Decimal) -> str:
    return f"${fm.to_cents(value)}"


def percent(rate_pct: Decimal) -> str:
    """5 -> '5%', 4.25 -> '4.25%'."""
    text = format(rate_pct.normalize(), "f")
    return f"{text}%"


def years_text(years: int) -> str:
    return "1 year" if years == 1 else f"{years} years"


def _rate(rng: random.Random, low_quarters: int, high_quarters: int) -> Decimal:
    """An annual rate in steps of 0.25 percentage points."""
    return Decimal(rng.randint(low_quarters, high_quarters)) / 4


def _compound(periods_per_year: int, label: str) -> Callable[[random.Random], ComputedQuestion]:
    formula = "A = P(1 + r)^t" if periods_per_year == 1 else "A = P(1 + r/12)^(12t)"

    def draw(rng: random.Random) -> ComputedQuestion:
        principal, rate, years = Decimal(rng.randint(1, 100) * 500), _rate(rng, 4, 48), rng.randint(1, 30)
        amount = fm.to_cents(fm.compound_amount(principal, rate, years, periods_per_year))
        fields = {"principal": money(principal), "rate": percent(rate), "years": years_text(years)}
        answer = (f"With {label} compounding, {formula}, so {fields['principal']} at {fields['rate']} for "
                  f"{fields['years']} grows to {money_cents(amount)}.")
        return ComputedQuestion({"principal": principal, "rate": rate, "years": years}, fields, answer,
                                float(amount))
    return draw


def _simple_interest(rng: random.Random) -> ComputedQuestion:
    principal, rate, years = Decimal(rng.randint(1, 200) * 250), _rate(rng, 4, 48), rng.randint(1, 10)
    interest = fm.to_cents(fm.simple_interest(principal, rate, years))
    fields = {"principal": money(principal), "rate": percent(rate), "years": years_text(years)}
    answer = (f"Simple interest is I = P × r × t = {fields['principal']} × {fields['rate']} × {years} = "
              f"{money_cents(interest)}.")
    return ComputedQuestion({"principal": principal, "rate": rate, "years": years}, fields, answer,
                            float(interest))


LOAN_TERMS_YEARS = (3, 5, 7, 10, 15, 20, 25, 30)


def _loan_payment(rng: random.Random) -> ComputedQuestion:
    principal, rate = Decimal(rng.randint(5, 500) * 1000), _rate(rng, 8, 40)
    years = rng.choice(LOAN_TERMS_YEARS)
    months = 12 * years
    payment = fm.to_cents(fm.monthly_payment(principal, rate, months))
    fields = {"principal": money(principal), "rate": percent(rate), "term": years_text(years),
              "term_adj": f"{years}-year"}
    answer = (f"Using M = P × i / (1 - (1 + i)^-n) with i = {fields['rate']}/12 and n = {months} monthly "
              f"payments, the monthly payment is {money_cents(payment)}.")
    return ComputedQuestion({"principal": principal, "rate": rate, "months": months}, fields, answer,
                            float(payment))


def _savings_future_value(rng: random.Random) -> ComputedQuestion:
    deposit, rate, years = Decimal(rng.randint(1, 40) * 25), _rate(rng, 4, 40), rng.randint(1, 40)
    months = 12 * years
    balance = fm.to_cents(fm.savings_future_value(deposit, rate, months))
    fields = {"deposit": money(deposit), "rate": percent(rate), "years": years_text(years)}
    answer = (f"Using FV = PMT × ((1 + i)^n - 1) / i with i = {fields['rate']}/12 and n = {months} monthly "
              f"deposits, the savings grow to {money_cents(balance)}.")
    return ComputedQuestion({"deposit": deposit, "rate": rate, "months": months}, fields, answer,
                            float(balance))


def _two_different_amounts(rng: random.Random, low: int, high: int) -> tuple[int, int]:
    """A starting amount and a different later amount between a fifth and three times it."""
    old = rng.randint(low, high)
    new = old
    while new == old:
        new = rng.randint(max(1, old // 5), old * 3)
    return old, new


def _percent_change(rng: random.Random) -> ComputedQuestion:
    old, new = (Decimal(v) for v in _two_different_amounts(rng, 10, 1000))
    change = fm.to_hundredths(fm.percent_change(old, new))
    fields = {"old": money(old), "new": money(new)}
    answer = (f"Percentage change = (new - old) / old × 100 = ({fields['new']} - {fields['old']}) / "
              f"{fields['old']} × 100 = {change}%.")
    return ComputedQuestion({"old": old, "new": new}, fields, answer, float(change))


def _return_on_investment(rng: random.Random) -> ComputedQuestion:
    cost, value = (Decimal(v * 100) for v in _two_different_amounts(rng, 1, 200))
    roi = fm.to_hundredths(fm.return_on_investment(cost, value))
    fields = {"cost": money(cost), "value": money(value)}
    answer = (f"ROI = (final value - cost) / cost × 100 = ({fields['value']} - {fields['cost']}) / "
              f"{fields['cost']} × 100 = {roi}%.")
    return ComputedQuestion({"cost": cost, "value": value}, fields, answer, float(roi))


def _rule_of_72(rng: random.Random) -> ComputedQuestion:
    rate = _rate(rng, 4, 80)  # 1% .. 20%: the rule is meant for ordinary rates
    years = fm.to_hundredths(fm.rule_of_72_years(rate))
    fields = {"rate": percent(rate)}
    answer = f"By the rule of 72, the doubling time is about 72 / {format(rate.normalize(), 'f')} = {years} years."
    return ComputedQuestion({"rate": rate}, fields, answer, float(years))


def _break_even(rng: random.Random) -> ComputedQuestion:
    fixed, variable = Decimal(rng.randint(10, 500) * 100), Decimal(rng.randint(1, 99))
    price = variable + rng.randint(1, 99)
    ratio = fm.to_hundredths(fm.break_even_ratio(fixed, price, variable))
    units = fm.break_even_units(fixed, price, variable)
    fields = {"fixed": money(fixed), "price": money(price), "variable": money(variable)}
    answer = (f"Break-even units = fixed costs / (price - variable cost) = {fields['fixed']} / "
              f"({fields['price']} - {fields['variable']}) = {ratio}, so at least {units} units must be sold.")
    return ComputedQuestion({"fixed": fixed, "price": price, "variable": variable}, fields, answer, float(units))


def _kind(name: str, *templates: str) -> QuestionKind:
    return QuestionKind(f"finance.{name}", templates)


# The last template of each kind is the first to be held out for the test split.
CALCULATIONS: dict[str, Calculation] = {
    "compound_annual": Calculation(_kind(
        "compound_annual",
        "If you invest {principal} at {rate} interest compounded annually, how much will you have after {years}?",
        "What is the future value of {principal} invested for {years} at {rate} per year, compounded annually?",
        "How much does a deposit of {principal} grow to in {years} at an annual rate of {rate} compounded yearly?",
        "Calculate the balance after {years} on {principal} earning {rate} interest compounded once a year.",
        "Find the amount in an account after {years} if {principal} is deposited at {rate} compounded annually.",
        "An account starts with {principal} and earns {rate} a year, compounded annually. What is it worth "
        "after {years}?",
    ), _compound(1, "annual")),
    "compound_monthly": Calculation(_kind(
        "compound_monthly",
        "If you invest {principal} at {rate} annual interest compounded monthly, how much will you have after "
        "{years}?",
        "What is the future value of {principal} after {years} at {rate} per year, compounded monthly?",
        "How much does {principal} grow to in {years} at an annual rate of {rate} with monthly compounding?",
        "Calculate the balance after {years} on a deposit of {principal} earning {rate} a year, compounded "
        "monthly.",
        "Find the value of {principal} after {years} if it earns {rate} a year, compounded monthly.",
        "A savings account holds {principal} and pays {rate} a year, compounded every month. What is the balance "
        "after {years}?",
    ), _compound(12, "monthly")),
    "simple_interest": Calculation(_kind(
        "simple_interest",
        "How much simple interest does {principal} earn at {rate} per year over {years}?",
        "What is the simple interest on {principal} at an annual rate of {rate} for {years}?",
        "Calculate the simple interest earned on {principal} invested for {years} at {rate} a year.",
        "If you lend {principal} at {rate} simple interest per year, how much interest is owed after {years}?",
        "An investment of {principal} earns {rate} simple interest a year. How much interest does it earn in "
        "{years}?",
        "Find the interest on a deposit of {principal} paying {rate} simple annual interest for {years}.",
    ), _simple_interest),
    "loan_payment": Calculation(_kind(
        "loan_payment",
        "What is the monthly payment on a {principal} loan at {rate} annual interest over {term}?",
        "Calculate the monthly payment for a {principal} mortgage at {rate} per year for {term}.",
        "How much is each monthly installment on a {term_adj} loan of {principal} at an annual rate of {rate}?",
        "If you borrow {principal} at {rate} a year and repay it monthly over {term}, what is the payment?",
        "Find the monthly repayment for borrowing {principal} over {term} at {rate} a year.",
        "A {term_adj} loan of {principal} charges {rate} annual interest. What fixed monthly payment pays it off?",
    ), _loan_payment),
    "savings_future_value": Calculation(_kind(
        "savings_future_value",
        "If you save {deposit} at the end of every month for {years} at {rate} annual interest compounded "
        "monthly, how much will you have?",
        "What is the future value of monthly deposits of {deposit} over {years} at {rate} per year, compounded "
        "monthly?",
        "How much will {deposit} saved at the end of each month grow to after {years} at an annual rate of "
        "{rate}, compounded monthly?",
        "Calculate the balance after {years} of depositing {deposit} at the end of each month into an account "
        "paying {rate} a year, compounded monthly.",
        "Find the future value of saving {deposit} at the end of each month for {years} at {rate} a year, "
        "compounded monthly.",
        "Someone puts {deposit} into savings at the end of each month for {years}, earning {rate} a year "
        "compounded monthly. What is the final balance?",
    ), _savings_future_value),
    "percent_change": Calculation(_kind(
        "percent_change",
        "A price changes from {old} to {new}. What is the percentage change?",
        "What is the percentage change when a value goes from {old} to {new}?",
        "A share price moves from {old} to {new}. By what percentage did it change?",
        "Calculate the percent change from {old} to {new}.",
        "By what percent does an amount change if it goes from {old} to {new}?",
        "Monthly sales went from {old} to {new}. What was the percentage change?",
    ), _percent_change),
    "return_on_investment": Calculation(_kind(
        "return_on_investment",
        "You invest {cost} and later sell the investment for {value}. What is your return on investment?",
        "What is the ROI of an investment that cost {cost} and is now worth {value}?",
        "Calculate the return on investment if {cost} grows to {value}.",
        "An investment bought for {cost} was sold for {value}. What is the ROI as a percentage?",
        "Find the ROI when an investment of {cost} ends up worth {value}.",
        "If a project costs {cost} and returns {value} in total, what is its return on investment?",
    ), _return_on_investment),
    "rule_of_72": Calculation(_kind(
        "rule_of_72",
        "Using the rule of 72, about how many years does it take to double money at {rate} a year?",
        "Roughly how long does an investment take to double at an annual return of {rate}, by the rule of 72?",
        "Estimate the doubling time of savings earning {rate} per year with the rule of 72.",
        "With the rule of 72, how many years until money doubles at {rate} annual interest?",
        "Approximately how many years will it take to double an investment at {rate} a year, using the rule of "
        "72?",
        "According to the rule of 72, how long does it take for an investment growing at {rate} a year to "
        "double?",
    ), _rule_of_72),
    "break_even": Calculation(_kind(
        "break_even",
        "A product sells for {price} per unit and costs {variable} per unit to make, with fixed costs of "
        "{fixed}. How many units must be sold to break even?",
        "What is the break-even quantity if fixed costs are {fixed}, the price is {price} per unit and the "
        "variable cost is {variable} per unit?",
        "How many units does a business need to sell to cover fixed costs of {fixed} when each unit sells for "
        "{price} and costs {variable} to make?",
        "Calculate the break-even point in units for fixed costs of {fixed}, a unit price of {price} and a unit "
        "variable cost of {variable}.",
        "Find the number of units needed to break even with fixed costs of {fixed}, a selling price of {price} "
        "and a variable cost of {variable} per unit.",
        "A bakery has fixed costs of {fixed}; each cake sells for {price} and costs {variable} to make. How many "
        "cakes must it sell to break even?",
    ), _break_even),
}
