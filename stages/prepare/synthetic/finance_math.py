"""Exact finance formulas behind the computed synthetic questions, in Decimal arithmetic.

    from stages.prepare.synthetic.finance_math import compound_amount, to_cents
    to_cents(compound_amount(Decimal(1000), Decimal(5), 10, 1))   # Decimal('1628.89')

Rates are annual percentages (5 means 5%). Functions return unrounded values computed with 50 significant
digits; callers round once, half-up, with `to_cents` / `to_hundredths`, so the reference answer is the value a
careful person gets by hand (no float drift such as 1.005 rounding down).
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, localcontext

_PRECISION = 50
CENT = Decimal("0.01")
HUNDRED = Decimal(100)


def to_cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


# Percentages and years are shown to two decimals as well; same rounding rule.
to_hundredths = to_cents


def compound_amount(principal: Decimal, rate_pct: Decimal, years: int, periods_per_year: int) -> Decimal:
    """A = P (1 + r/m)^(m t): balance after `years` with `periods_per_year` compounding periods."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        periodic = rate_pct / HUNDRED / periods_per_year
        return principal * (1 + periodic) ** (periods_per_year * years)


def simple_interest(principal: Decimal, rate_pct: Decimal, years: int) -> Decimal:
    """I = P r t (interest only, not the final balance)."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return principal * rate_pct / HUNDRED * years


def monthly_payment(principal: Decimal, rate_pct: Decimal, months: int) -> Decimal:
    """Level payment of a fully amortising loan: M = P i / (1 - (1 + i)^-n), i = r/12."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        if rate_pct == 0:
            return principal / months
        i = rate_pct / HUNDRED / 12
        return principal * i / (1 - (1 + i) ** -months)


def savings_future_value(monthly_deposit: Decimal, rate_pct: Decimal, months: int) -> Decimal:
    """Ordinary annuity (deposit at the end of each month): FV = PMT ((1 + i)^n - 1) / i, i = r/12."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        if rate_pct == 0:
            return monthly_deposit * months
        i = rate_pct / HUNDRED / 12
        return monthly_deposit * ((1 + i) ** months - 1) / i


def percent_change(old: Decimal, new: Decimal) -> Decimal:
    """(new - old) / old x 100; negative for a decrease."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return (new - old) / old * HUNDRED


def return_on_investment(cost: Decimal, final_value: Decimal) -> Decimal:
    """ROI in percent: (final value - cost) / cost x 100."""
    return percent_change(cost, final_value)


def rule_of_72_years(rate_pct: Decimal) -> Decimal:
    """Approximate doubling time in years: 72 / (annual percentage rate)."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return Decimal(72) / rate_pct


def break_even_ratio(fixed_costs: Decimal, price: Decimal, variable_cost: Decimal) -> Decimal:
    """Fixed costs / contribution margin per unit, before rounding up to whole units."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return fixed_costs / (price - variable_cost)


def break_even_units(fixed_costs: Decimal, price: Decimal, variable_cost: Decimal) -> int:
    """Smallest whole number of units whose contribution covers the fixed costs."""
    return int(break_even_ratio(fixed_costs, price, variable_cost).to_integral_value(rounding=ROUND_CEILING))
