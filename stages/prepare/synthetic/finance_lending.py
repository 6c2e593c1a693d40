"""Finance fact table, part 1: interest, borrowing, bonds and the time value of money.

One row per term; each field (definition, example, importance) is the single canonical answer to every
paraphrase of that question. Examples use round numbers worked out exactly (checked in
tests/stages/prepare/test_synthetic_finance_terms.py) and differ from any number the definition quotes, so a
held-out example is not already stated by the taught definition.
"""

from __future__ import annotations

LENDING_TERMS: list[dict] = [
    {
        "key": "apr", "subject": "APR (annual percentage rate)",
        "definition": "APR, the annual percentage rate, is the yearly cost of borrowing as a percentage, including "
                      "interest and certain fees but not the effect of compounding.",
        "example": "For example, a $10000 loan at 6% interest that also charges a $200 origination fee has an APR "
                   "above 6%, because the fee adds to the yearly cost of borrowing.",
        "importance": "APR lets borrowers compare loans and credit cards on one yearly cost figure, which is why "
                      "lenders in the United States must disclose it under the Truth in Lending Act.",
    },
    {
        "key": "apy", "subject": "APY (annual percentage yield)",
        "definition": "APY, the annual percentage yield, is the effective yearly rate including the effect of "
                      "compounding, so it is higher than the nominal rate whenever interest compounds more than "
                      "once a year.",
        "example": "For example, a savings account paying 5% interest compounded monthly has an APY of about "
                   "5.12%, because each month's interest also earns interest for the rest of the year.",
        "importance": "APY lets savers compare deposit accounts that compound at different frequencies on one "
                      "basis; the account with the higher APY earns more interest over a year.",
    },
    {
        "key": "compound_interest", "subject": "compound interest",
        "definition": "Compound interest is interest calculated on the principal plus the interest already added, "
                      "so the balance grows faster over time than with simple interest.",
        "example": "For example, $1000 invested at 10% a year compounded annually grows to $1100 after one year "
                   "and $1210 after two, since the second year's interest is earned on $1100.",
        "importance": "Compound interest makes saving early valuable, because growth builds on itself over "
                      "decades, and it makes unpaid credit card balances grow quickly.",
    },
    {
        "key": "simple_interest", "subject": "simple interest",
        "definition": "Simple interest is interest calculated only on the original principal: principal times "
                      "annual rate times the number of years.",
        "example": "For example, borrowing $2000 at 5% simple interest for 3 years costs $2000 times 0.05 times 3, "
                   "which is $300 of interest.",
        "importance": "Simple interest is common for short-term loans and many car loans; because interest is "
                      "never charged on interest, the cost grows in a straight line and is easy to predict.",
    },
    {
        "key": "bond", "subject": "a bond",
        "definition": "A bond is a loan from an investor to a government or company that pays regular interest, "
                      "called coupons, and repays its face value at maturity.",
        "example": "For example, a 10-year government bond with a $1000 face value and a 4% coupon pays $40 of "
                   "interest a year and repays $1000 at the end of the tenth year.",
        "importance": "Bonds let governments and companies borrow for long periods, and investors hold them for "
                      "steady income and to balance the larger price swings of stocks.",
    },
    {
        "key": "bond_yield", "subject": "bond yield",
        "definition": "Bond yield is the return a bond pays relative to its price; current yield is the annual "
                      "coupon divided by the market price, so yields rise when bond prices fall.",
        "example": "For example, a bond paying a $50 annual coupon that trades at $900 has a current yield of "
                   "about 5.56%, since 50 divided by 900 is about 0.0556.",
        "importance": "Bond yields let investors compare bonds with different prices and coupons, and yields on "
                      "government bonds serve as benchmarks for mortgage and other loan rates.",
    },
    {
        "key": "yield_to_maturity", "subject": "yield to maturity",
        "definition": "Yield to maturity is the total annual return earned by buying a bond at its current price "
                      "and holding it until it matures, assuming all payments are made as promised.",
        "example": "For example, a bond with a 5% coupon bought below face value has a yield to maturity above "
                   "5%, because the holder also gains the discount when it is repaid at face value.",
        "importance": "Yield to maturity is the standard way to compare bonds with different coupons, prices and "
                      "maturities, since it counts both the coupons and any gain or loss at maturity.",
    },
    {
        "key": "coupon_rate", "subject": "a bond's coupon rate",
        "definition": "A bond's coupon rate is the annual interest it pays as a percentage of its face value; a "
                      "$1000 bond with a 5% coupon pays $50 a year.",
        "example": "For example, a bond with a $5000 face value and a 3% coupon rate pays $150 of interest a "
                   "year, often as two payments of $75.",
        "importance": "The coupon rate sets a bond's cash income and is fixed for most bonds, so when market "
                      "rates rise, older bonds with lower coupons fall in price.",
    },
    {
        "key": "credit_score", "subject": "a credit score",
        "definition": "A credit score is a number summarizing how reliably a person has repaid debt; lenders use "
                      "it to judge credit risk, and higher scores usually get better loan terms.",
        "example": "For example, on the common FICO scale from 300 to 850, a score of 740 or more is usually "
                   "rated very good or exceptional and tends to qualify for lower interest rates.",
        "importance": "A credit score affects whether a person can borrow and at what interest rate, so late "
                      "payments can make mortgages, car loans and credit cards cost more for years.",
    },
    {
        "key": "amortization", "subject": "loan amortization",
        "definition": "Loan amortization is repaying a loan with regular fixed payments that cover interest and "
                      "part of the principal, so early payments are mostly interest and later ones mostly "
                      "principal.",
        "example": "For example, a 30-year $200000 mortgage at 6% has a monthly payment of about $1199; in the "
                   "first month $1000 of it is interest and only about $199 repays principal.",
        "importance": "An amortization schedule shows how much of each payment goes to interest and to principal, "
                      "which helps borrowers see what extra payments save and how much equity they have built.",
    },
    {
        "key": "principal", "subject": "the principal of a loan",
        "definition": "The principal of a loan is the original amount borrowed, not counting interest; payments "
                      "reduce it over time.",
        "example": "For example, if you borrow $15000 for a car, the principal is $15000; once $3000 of it is "
                   "repaid, interest accrues only on the remaining $12000.",
        "importance": "The principal matters because interest is charged on it, so paying it down faster, for "
                      "example with extra payments, reduces the total interest paid over the loan's life.",
    },
    {
        "key": "collateral", "subject": "collateral",
        "definition": "Collateral is an asset a borrower pledges to secure a loan, which the lender can take if "
                      "the loan is not repaid, such as the house securing a mortgage.",
        "example": "For example, in a car loan the car itself is the collateral, so the lender can repossess it "
                   "if the borrower stops making payments.",
        "importance": "Collateral lowers the lender's risk, so secured loans such as mortgages and car loans "
                      "usually carry lower interest rates than unsecured debt like credit cards.",
    },
    {
        "key": "mortgage", "subject": "a mortgage",
        "definition": "A mortgage is a loan used to buy property and secured by it, so the lender can repossess "
                      "the property if the payments are not made.",
        "example": "For example, a buyer might pay $60000 down on a $300000 home and take a 30-year mortgage for "
                   "the remaining $240000, repaid in monthly installments.",
        "importance": "A mortgage lets people buy a home without paying the full price upfront, and because it is "
                      "secured by the property it usually costs less than unsecured borrowing.",
    },
    {
        "key": "interest_rate_risk", "subject": "interest rate risk",
        "definition": "Interest rate risk is the risk that a bond's price falls when market interest rates rise, "
                      "because existing bonds then pay less than newly issued ones.",
        "example": "For example, if market rates rise from 3% to 5%, an existing bond with a 3% coupon falls in "
                   "price until its yield is competitive, and longer-term bonds fall the most.",
        "importance": "Interest rate risk matters most to holders of long-term bonds, so investors manage it by "
                      "choosing shorter maturities or spreading their bonds across several maturity dates.",
    },
    {
        "key": "inflation", "subject": "inflation",
        "definition": "Inflation is the general rise in prices over time, which reduces the purchasing power of "
                      "money; it is often measured with a consumer price index.",
        "example": "For example, with 3% annual inflation, a basket of goods that costs $100 today costs about "
                   "$103 a year later, so the same $100 in cash buys less.",
        "importance": "Inflation erodes the real value of cash and fixed payments, so savers need returns above "
                      "it, and central banks raise interest rates to slow it down.",
    },
    {
        "key": "opportunity_cost", "subject": "opportunity cost",
        "definition": "Opportunity cost is the value of the best alternative given up when making a choice, such "
                      "as the interest forgone by spending money instead of saving it.",
        "example": "For example, spending $5000 on a vacation instead of investing it at 5% a year means giving "
                   "up the $250 it could have earned in the first year.",
        "importance": "Opportunity cost reminds people to weigh each choice against the best other use of the "
                      "same money or time, not just against doing nothing.",
    },
    {
        "key": "time_value_of_money", "subject": "the time value of money",
        "definition": "The time value of money is the idea that money today is worth more than the same amount in "
                      "the future, because it can earn interest or returns in the meantime.",
        "example": "For example, at 5% interest $1000 received today grows to $1050 in a year, so it is worth "
                   "more than $1000 received a year from now.",
        "importance": "The time value of money underlies loan pricing, bond valuation, retirement planning and net "
                      "present value, because it lets amounts paid at different dates be compared.",
    },
    {
        "key": "npv", "subject": "net present value (NPV)",
        "definition": "Net present value is the sum of a project's future cash flows discounted to today's value, "
                      "minus the initial investment; a positive NPV suggests the project adds value.",
        "example": "For example, a project costing $1000 today that returns $1100 in one year has an NPV of about "
                   "$47.62 at a 5% discount rate, since 1100 divided by 1.05 is about 1047.62.",
        "importance": "Companies use net present value to decide which projects to fund: a positive NPV adds "
                      "value, while a negative one means the money would earn more elsewhere at that rate.",
    },
    {
        "key": "rule_of_72", "subject": "the rule of 72",
        "definition": "The rule of 72 estimates how many years an investment takes to double: divide 72 by the "
                      "annual percentage return, so at 8% it takes about 9 years.",
        "example": "For example, money earning 6% a year doubles in about 12 years, since 72 divided by 6 is 12, "
                   "and at 3% it takes about 24 years.",
        "importance": "The rule of 72 gives a quick mental estimate of how fast savings grow or how fast inflation "
                      "halves purchasing power; it is most accurate for rates around 6% to 10%.",
    },
]
