"""Finance question kinds: definitions of common personal-finance and investing terms, asked in several
paraphrases. The computed numeric questions (interest, loan payments, ROI, ...) live in finance_calc.py.

    from stages.prepare.synthetic.finance import FINANCE_FACTS, FINANCE_KINDS

Definitions are standard textbook ones; they are for demonstrating fine-tuning, not financial advice.
"""

from __future__ import annotations

from stages.prepare.synthetic.facts import QuestionKind, StaticFact, facts_from_table

# The last template is the first to be held out for the test split.
FINANCE_KINDS: dict[str, QuestionKind] = {
    "definition": QuestionKind("finance.definition", (
        "What is {subject}?",
        "How would you define {subject} in plain language?",
        "What is meant by {subject} in finance?",
        "Can you explain {subject} to a beginner investor?",
        "Give me a clear definition of {subject}.",
        "Explain {subject} in one or two sentences.",
    )),
}


def _term(key: str, subject: str, definition: str) -> dict:
    return {"key": key, "subject": subject, "definition": definition}


TERMS: list[dict] = [
    _term("apr", "APR (annual percentage rate)",
          "APR, the annual percentage rate, is the yearly cost of borrowing as a percentage, including interest "
          "and certain fees but not the effect of compounding."),
    _term("apy", "APY (annual percentage yield)",
          "APY, the annual percentage yield, is the effective yearly rate including the effect of compounding, "
          "so it is higher than the nominal rate whenever interest compounds more than once a year."),
    _term("compound_interest", "compound interest",
          "Compound interest is interest calculated on the principal plus the interest already added, so the "
          "balance grows faster over time than with simple interest."),
    _term("simple_interest", "simple interest",
          "Simple interest is interest calculated only on the original principal: principal times annual rate "
          "times the number of years."),
    _term("diversification", "diversification",
          "Diversification is spreading investments across different assets, sectors and regions so a loss in "
          "one holding hurts the portfolio less; it reduces risk but cannot remove market-wide risk."),
    _term("bond", "a bond",
          "A bond is a loan from an investor to a government or company that pays regular interest, called "
          "coupons, and repays its face value at maturity."),
    _term("bond_yield", "bond yield",
          "Bond yield is the return a bond pays relative to its price; current yield is the annual coupon "
          "divided by the market price, so yields rise when bond prices fall."),
    _term("yield_to_maturity", "yield to maturity",
          "Yield to maturity is the total annual return earned by buying a bond at its current price and "
          "holding it until it matures, assuming all payments are made as promised."),
    _term("coupon_rate", "a bond's coupon rate",
          "A bond's coupon rate is the annual interest it pays as a percentage of its face value; a $1000 bond "
          "with a 5% coupon pays $50 a year."),
    _term("pe_ratio", "the price-to-earnings (P/E) ratio",
          "The price-to-earnings ratio is a company's share price divided by its earnings per share, showing "
          "how much investors pay for each dollar of earnings."),
    _term("eps", "earnings per share (EPS)",
          "Earnings per share is a company's net profit, after preferred dividends, divided by the number of "
          "common shares outstanding."),
    _term("dividend", "a dividend",
          "A dividend is a payment a company makes to its shareholders out of its profits, usually in cash and "
          "often every quarter."),
    _term("dividend_yield", "dividend yield",
          "Dividend yield is the annual dividend per share divided by the share price, expressed as a "
          "percentage."),
    _term("market_cap", "market capitalization",
          "Market capitalization is the total market value of a company's shares: the share price multiplied "
          "by the number of shares outstanding."),
    _term("inflation", "inflation",
          "Inflation is the general rise in prices over time, which reduces the purchasing power of money; it "
          "is often measured with a consumer price index."),
    _term("liquidity", "liquidity",
          "Liquidity is how quickly and easily an asset can be turned into cash without losing much value; "
          "cash is the most liquid asset, while real estate is relatively illiquid."),
    _term("roi", "return on investment (ROI)",
          "Return on investment is the gain from an investment minus its cost, divided by the cost, usually "
          "expressed as a percentage."),
    _term("net_worth", "net worth",
          "Net worth is the value of everything a person or company owns (assets) minus everything it owes "
          "(liabilities)."),
    _term("credit_score", "a credit score",
          "A credit score is a number summarizing how reliably a person has repaid debt; lenders use it to "
          "judge credit risk, and higher scores usually get better loan terms."),
    _term("amortization", "loan amortization",
          "Loan amortization is repaying a loan with regular fixed payments that cover interest and part of "
          "the principal, so early payments are mostly interest and later ones mostly principal."),
    _term("principal", "the principal of a loan",
          "The principal of a loan is the original amount borrowed, not counting interest; payments reduce it "
          "over time."),
    _term("stock", "a stock",
          "A stock, or share, is a unit of ownership in a company that gives the holder a claim on part of its "
          "assets and profits and often a vote at shareholder meetings."),
    _term("mutual_fund", "a mutual fund",
          "A mutual fund pools money from many investors to buy a professionally managed portfolio of stocks, "
          "bonds or other assets, and each investor owns shares of the fund."),
    _term("index_fund", "an index fund",
          "An index fund is a mutual fund or ETF that tracks a market index such as the S&P 500, giving broad "
          "diversification at low cost."),
    _term("etf", "an exchange-traded fund (ETF)",
          "An exchange-traded fund is a fund holding a basket of assets, often tracking an index, whose shares "
          "trade on a stock exchange throughout the day like individual stocks."),
    _term("asset_allocation", "asset allocation",
          "Asset allocation is how a portfolio is divided among asset classes such as stocks, bonds and cash, "
          "chosen according to goals, time horizon and risk tolerance."),
    _term("dollar_cost_averaging", "dollar-cost averaging",
          "Dollar-cost averaging is investing a fixed amount at regular intervals regardless of price, so more "
          "shares are bought when prices are low and fewer when they are high."),
    _term("capital_gain", "a capital gain",
          "A capital gain is the profit from selling an asset for more than its purchase price; selling for "
          "less gives a capital loss."),
    _term("emergency_fund", "an emergency fund",
          "An emergency fund is cash set aside for unexpected costs such as job loss or repairs, commonly three "
          "to six months of essential expenses kept in an easily accessible account."),
    _term("bull_market", "a bull market",
          "A bull market is a period of generally rising prices in a financial market, often defined as a rise "
          "of 20% or more from a recent low."),
    _term("bear_market", "a bear market",
          "A bear market is a period of falling prices in a financial market, commonly defined as a decline of "
          "20% or more from a recent high."),
    _term("balance_sheet", "a balance sheet",
          "A balance sheet is a financial statement listing a company's assets, liabilities and shareholders' "
          "equity at one point in time; assets always equal liabilities plus equity."),
    _term("cash_flow", "cash flow",
          "Cash flow is the net amount of cash moving into and out of a business or household over a period; "
          "positive cash flow means more comes in than goes out."),
    _term("volatility", "volatility",
          "Volatility measures how much an asset's price swings up and down over time, often as the standard "
          "deviation of its returns; higher volatility means higher risk."),
    _term("collateral", "collateral",
          "Collateral is an asset a borrower pledges to secure a loan, which the lender can take if the loan is "
          "not repaid, such as the house securing a mortgage."),
    _term("opportunity_cost", "opportunity cost",
          "Opportunity cost is the value of the best alternative given up when making a choice, such as the "
          "interest forgone by spending money instead of saving it."),
    _term("time_value_of_money", "the time value of money",
          "The time value of money is the idea that money today is worth more than the same amount in the "
          "future, because it can earn interest or returns in the meantime."),
    _term("npv", "net present value (NPV)",
          "Net present value is the sum of a project's future cash flows discounted to today's value, minus "
          "the initial investment; a positive NPV suggests the project adds value."),
    _term("rule_of_72", "the rule of 72",
          "The rule of 72 estimates how many years an investment takes to double: divide 72 by the annual "
          "percentage return, so at 8% it takes about 9 years."),
    _term("expense_ratio", "a fund's expense ratio",
          "A fund's expense ratio is its annual fee as a percentage of the money invested; a 0.5% expense "
          "ratio costs $5 a year for every $1000 invested."),
    _term("interest_rate_risk", "interest rate risk",
          "Interest rate risk is the risk that a bond's price falls when market interest rates rise, because "
          "existing bonds then pay less than newly issued ones."),
    _term("mortgage", "a mortgage",
          "A mortgage is a loan used to buy property and secured by it, so the lender can repossess the "
          "property if the payments are not made."),
]

FINANCE_FACTS: list[StaticFact] = facts_from_table("finance", FINANCE_KINDS, TERMS)
