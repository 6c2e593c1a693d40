"""Finance fact table, part 2: stocks, funds, markets and household finances.

One row per term; each field (definition, example, importance) is the single canonical answer to every
paraphrase of that question. Examples use round numbers worked out exactly (checked in
tests/stages/prepare/test_synthetic_finance_terms.py) and differ from any number the definition quotes.
"""

from __future__ import annotations

INVESTING_TERMS: list[dict] = [
    {
        "key": "stock", "subject": "a stock",
        "definition": "A stock, or share, is a unit of ownership in a company that gives the holder a claim on "
                      "part of its assets and profits and often a vote at shareholder meetings.",
        "example": "For example, owning 100 shares of a company with 1 million shares outstanding means owning "
                   "0.01% of the company and receiving 0.01% of any dividends it pays.",
        "importance": "Stocks let companies raise capital without borrowing, and over long periods they have "
                      "historically returned more than bonds or cash, with larger swings in value.",
    },
    {
        "key": "pe_ratio", "subject": "the price-to-earnings (P/E) ratio",
        "definition": "The price-to-earnings ratio is a company's share price divided by its earnings per share, "
                      "showing how much investors pay for each dollar of earnings.",
        "example": "For example, a company whose shares trade at $60 and that earned $3 per share over the past "
                   "year has a P/E ratio of 20.",
        "importance": "The P/E ratio helps investors judge whether a stock looks expensive or cheap relative to "
                      "its profits and compare companies in the same industry; a high P/E often reflects expected "
                      "growth.",
    },
    {
        "key": "eps", "subject": "earnings per share (EPS)",
        "definition": "Earnings per share is a company's net profit, after preferred dividends, divided by the "
                      "number of common shares outstanding.",
        "example": "For example, a company with $10 million of net profit, no preferred stock and 5 million "
                   "common shares outstanding has earnings per share of $2.",
        "importance": "Earnings per share is a key measure of profitability for shareholders; analysts track its "
                      "growth and use it to compute the price-to-earnings ratio.",
    },
    {
        "key": "dividend", "subject": "a dividend",
        "definition": "A dividend is a payment a company makes to its shareholders out of its profits, usually in "
                      "cash and often every quarter.",
        "example": "For example, a company paying a quarterly dividend of $0.50 per share pays an investor who "
                   "holds 100 shares $50 each quarter, or $200 a year.",
        "importance": "Dividends give shareholders regular income without selling shares, which is why many "
                      "retirees favor dividend-paying stocks, though a company can cut them at any time.",
    },
    {
        "key": "dividend_yield", "subject": "dividend yield",
        "definition": "Dividend yield is the annual dividend per share divided by the share price, expressed as a "
                      "percentage.",
        "example": "For example, a stock priced at $50 that pays $2 of dividends per share a year has a dividend "
                   "yield of 4%.",
        "importance": "Dividend yield lets income investors compare the cash return of different stocks; an "
                      "unusually high yield can signal a falling share price or a dividend at risk of a cut.",
    },
    {
        "key": "market_cap", "subject": "market capitalization",
        "definition": "Market capitalization is the total market value of a company's shares: the share price "
                      "multiplied by the number of shares outstanding.",
        "example": "For example, a company with 100 million shares outstanding trading at $25 each has a market "
                   "capitalization of $2.5 billion.",
        "importance": "Market capitalization is used to classify companies as large-cap, mid-cap or small-cap and "
                      "to weight them in indexes such as the S&P 500.",
    },
    {
        "key": "diversification", "subject": "diversification",
        "definition": "Diversification is spreading investments across different assets, sectors and regions so "
                      "a loss in one holding hurts the portfolio less; it reduces risk but cannot remove "
                      "market-wide risk.",
        "example": "For example, a portfolio of a broad stock index fund plus a bond fund barely notices one "
                   "company going bankrupt, while a portfolio of that company's shares alone is wiped out.",
        "importance": "Diversification lowers a portfolio's risk without necessarily lowering its expected "
                      "return, which is why advisers recommend broad funds over a handful of individual stocks.",
    },
    {
        "key": "mutual_fund", "subject": "a mutual fund",
        "definition": "A mutual fund pools money from many investors to buy a professionally managed portfolio of "
                      "stocks, bonds or other assets, and each investor owns shares of the fund.",
        "example": "For example, an investor who puts $1000 into a balanced mutual fund owns a small slice of a "
                   "portfolio of hundreds of stocks and bonds chosen by the fund's managers.",
        "importance": "Mutual funds give small investors diversification and professional management they could "
                      "not easily get alone, in exchange for yearly fees shown in the expense ratio.",
    },
    {
        "key": "index_fund", "subject": "an index fund",
        "definition": "An index fund is a mutual fund or ETF that tracks a market index such as the S&P 500, "
                      "giving broad diversification at low cost.",
        "example": "For example, an S&P 500 index fund holds the roughly 500 large US companies in that index in "
                   "the same proportions, so its return closely matches the index's.",
        "importance": "Index funds are popular for long-term investing because their low fees and broad "
                      "diversification mean most actively managed funds trail them over long periods.",
    },
    {
        "key": "etf", "subject": "an exchange-traded fund (ETF)",
        "definition": "An exchange-traded fund is a fund holding a basket of assets, often tracking an index, "
                      "whose shares trade on a stock exchange throughout the day like individual stocks.",
        "example": "For example, an investor can buy a single share of an ETF that tracks the S&P 500 through a "
                   "brokerage account during market hours, just like buying one company's stock.",
        "importance": "ETFs give investors cheap, diversified exposure that can be bought or sold whenever the "
                      "exchange is open, and index ETFs usually have low expense ratios.",
    },
    {
        "key": "expense_ratio", "subject": "a fund's expense ratio",
        "definition": "A fund's expense ratio is its annual fee as a percentage of the money invested; a 0.5% "
                      "expense ratio costs $5 a year for every $1000 invested.",
        "example": "For example, a fund with a 1% expense ratio costs $100 a year on a $10000 investment, while "
                   "a fund charging 0.1% costs $10 a year on the same amount.",
        "importance": "Expense ratios are deducted every year whatever the fund's performance, so over decades "
                      "even small differences in fees noticeably reduce an investor's final balance.",
    },
    {
        "key": "asset_allocation", "subject": "asset allocation",
        "definition": "Asset allocation is how a portfolio is divided among asset classes such as stocks, bonds "
                      "and cash, chosen according to goals, time horizon and risk tolerance.",
        "example": "For example, a young investor saving for retirement might hold 80% stocks and 20% bonds, "
                   "while someone about to retire might hold closer to 40% stocks and 60% bonds.",
        "importance": "Asset allocation largely determines a portfolio's risk and long-run return, so investors "
                      "revisit it as goals change and rebalance to keep it on target.",
    },
    {
        "key": "dollar_cost_averaging", "subject": "dollar-cost averaging",
        "definition": "Dollar-cost averaging is investing a fixed amount at regular intervals regardless of "
                      "price, so more shares are bought when prices are low and fewer when they are high.",
        "example": "For example, investing $200 a month buys 10 shares at $20 and then 20 shares at $10, so the "
                   "30 shares cost $400 in total, an average of about $13.33 per share.",
        "importance": "Dollar-cost averaging removes the need to time the market and builds a steady saving "
                      "habit; retirement plan contributions taken from each paycheck work this way.",
    },
    {
        "key": "capital_gain", "subject": "a capital gain",
        "definition": "A capital gain is the profit from selling an asset for more than its purchase price; "
                      "selling for less gives a capital loss.",
        "example": "For example, buying shares for $2000 and later selling them for $2600 gives a capital gain "
                   "of $600.",
        "importance": "Capital gains are often taxed, and many tax systems tax assets held for longer at lower "
                      "rates, so how long an investment is held can change the tax owed.",
    },
    {
        "key": "roi", "subject": "return on investment (ROI)",
        "definition": "Return on investment is the gain from an investment minus its cost, divided by the cost, "
                      "usually expressed as a percentage.",
        "example": "For example, equipment bought for $5000 that brings in $6500 has a return on investment of "
                   "30%, since the $1500 gain divided by the $5000 cost is 0.3.",
        "importance": "Return on investment lets businesses and investors compare different uses of money, but it "
                      "ignores how long the money was tied up, so annualized returns are compared too.",
    },
    {
        "key": "bull_market", "subject": "a bull market",
        "definition": "A bull market is a period of generally rising prices in a financial market, often defined "
                      "as a rise of 20% or more from a recent low.",
        "example": "For example, US stocks rose for about 11 years from their March 2009 low to early 2020, one "
                   "of the longest bull markets on record.",
        "importance": "Bull markets raise investors' wealth and confidence, but rising prices can tempt people to "
                      "take on more risk than they can afford, so rebalancing keeps the intended mix.",
    },
    {
        "key": "bear_market", "subject": "a bear market",
        "definition": "A bear market is a period of falling prices in a financial market, commonly defined as a "
                      "decline of 20% or more from a recent high.",
        "example": "For example, the S&P 500 fell about 57% from its October 2007 peak to its March 2009 low "
                   "during the global financial crisis.",
        "importance": "Bear markets test investors' risk tolerance: selling in a panic locks in losses, while "
                      "broad markets have historically recovered over time for those able to hold on.",
    },
    {
        "key": "volatility", "subject": "volatility",
        "definition": "Volatility measures how much an asset's price swings up and down over time, often as the "
                      "standard deviation of its returns; higher volatility means higher risk.",
        "example": "For example, a stock whose price often moves 3% in a day is far more volatile than a "
                   "short-term government bond fund whose price rarely moves more than a fraction of a percent.",
        "importance": "Volatility matters because a volatile investment may be well below its purchase price "
                      "exactly when the money is needed, so short-term savings belong in steadier assets.",
    },
    {
        "key": "liquidity", "subject": "liquidity",
        "definition": "Liquidity is how quickly and easily an asset can be turned into cash without losing much "
                      "value; cash is the most liquid asset, while real estate is relatively illiquid.",
        "example": "For example, shares of a large listed company can be sold within seconds at the market "
                   "price, while selling a house usually takes weeks or months and costs fees.",
        "importance": "Liquidity matters because money that may be needed soon belongs in liquid assets; an "
                      "illiquid asset may have to be sold at a discount in a hurry.",
    },
    {
        "key": "net_worth", "subject": "net worth",
        "definition": "Net worth is the value of everything a person or company owns (assets) minus everything "
                      "it owes (liabilities).",
        "example": "For example, someone with a $300000 home, $50000 of savings, a $200000 mortgage and a $10000 "
                   "car loan has a net worth of $140000.",
        "importance": "Net worth is a snapshot of overall financial health; tracking it over time shows whether "
                      "saving and paying down debt are making progress.",
    },
    {
        "key": "emergency_fund", "subject": "an emergency fund",
        "definition": "An emergency fund is cash set aside for unexpected costs such as job loss or repairs, "
                      "commonly three to six months of essential expenses kept in an easily accessible account.",
        "example": "For example, a household with $3000 of essential monthly expenses would aim for an emergency "
                   "fund of about $9000 to $18000 in a savings account.",
        "importance": "An emergency fund keeps a job loss or sudden bill from forcing high-interest borrowing or "
                      "the sale of investments at a bad time.",
    },
    {
        "key": "cash_flow", "subject": "cash flow",
        "definition": "Cash flow is the net amount of cash moving into and out of a business or household over a "
                      "period; positive cash flow means more comes in than goes out.",
        "example": "For example, a household that earns $4000 a month after tax and spends $3500 has a positive "
                   "cash flow of $500 a month.",
        "importance": "Cash flow matters because a business can be profitable on paper yet fail if it runs out of "
                      "cash to pay its bills, so owners and lenders watch it closely.",
    },
    {
        "key": "balance_sheet", "subject": "a balance sheet",
        "definition": "A balance sheet is a financial statement listing a company's assets, liabilities and "
                      "shareholders' equity at one point in time; assets always equal liabilities plus equity.",
        "example": "For example, a company with $500000 of assets and $300000 of liabilities shows $200000 of "
                   "shareholders' equity on its balance sheet.",
        "importance": "The balance sheet shows what a company owns and owes, so lenders and investors use it to "
                      "judge its liquidity, debt levels and financial strength.",
    },
]
