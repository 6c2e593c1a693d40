"""Legal fact table, part 2: property, evidence and procedure, criminal law, trusts and equitable remedies.

Same row shape as legal_contracts_torts.py. Where rules differ between jurisdictions (time limits, the exact
elements), the answer says so instead of picking one.
"""

from __future__ import annotations

PROPERTY_CRIME_PROCEDURE_CONCEPTS: list[dict] = [
    {
        "key": "adverse_possession", "subject": "adverse possession",
        "area": "Adverse possession belongs to property law, specifically the law of land ownership.",
        "definition": "Adverse possession is a doctrine by which someone who occupies another's land in the "
                      "required way for a period set by statute can gain legal title to it.",
        "elements": "Adverse possession requires possession that is actual, open and notorious, exclusive, "
                    "hostile (without the owner's permission) and continuous for the statutory period, which "
                    "varies by jurisdiction.",
        "example": "For example, a neighbor fences in an unused strip of land and openly uses it as their own "
                   "garden, without permission, for the whole statutory period.",
    },
    {
        "key": "easement", "subject": "an easement",
        "area": "An easement belongs to property law, as a right over land owned by someone else.",
        "definition": "An easement is a right to use another person's land for a specific purpose without "
                      "owning it, such as a right of way or a right to run utility lines across it.",
        "example": "For example, the owner of a house with no road access has an easement to drive across the "
                   "neighboring farm to reach the public road.",
    },
    {
        "key": "fee_simple", "subject": "a fee simple",
        "area": "A fee simple belongs to property law, specifically the estates in land.",
        "definition": "A fee simple is the most complete form of land ownership: it lasts indefinitely, and the "
                      "owner can sell it, give it away or leave it by will.",
        "example": "For example, a person who buys a house and receives an ordinary deed usually owns it in fee "
                   "simple, even if the house is mortgaged.",
    },
    {
        "key": "trust", "subject": "a trust",
        "area": "A trust belongs to the law of trusts, which developed from equity.",
        "definition": "A trust is an arrangement in which a settlor transfers property to a trustee, who holds "
                      "and manages it for the benefit of one or more beneficiaries.",
        "example": "For example, parents leave money in trust with an aunt as trustee, to pay for their "
                   "children's education until they turn 25.",
    },
    {
        "key": "fiduciary_duty", "subject": "a fiduciary duty",
        "area": "A fiduciary duty belongs to equity and trust law, and it also governs agents and company "
                "directors.",
        "definition": "A fiduciary duty is an obligation to act loyally and in good faith in another person's "
                      "best interests, owed by trustees, company directors and agents, and it forbids secret "
                      "profits and undisclosed conflicts.",
        "example": "For example, a trustee who sells trust property cheaply to their own company breaches their "
                   "fiduciary duty to the beneficiaries.",
    },
    {
        "key": "power_of_attorney", "subject": "a power of attorney",
        "area": "A power of attorney belongs to the law of agency, and it is also used in estate and elder "
                "planning.",
        "definition": "A power of attorney is a legal document in which one person authorizes another to act on "
                      "their behalf in financial or legal matters; a durable or lasting power continues if they "
                      "lose mental capacity.",
        "example": "For example, an elderly parent gives an adult child a power of attorney to manage their bank "
                   "accounts and pay their bills.",
    },
    {
        "key": "injunction", "subject": "an injunction",
        "area": "An injunction belongs to the law of remedies, as an equitable remedy available in many kinds of "
                "case.",
        "definition": "An injunction is a court order requiring a party to do something or, more often, to stop "
                      "doing something; it is an equitable remedy, and disobeying it is contempt of court.",
        "example": "For example, a court orders a former employee to stop using the employer's confidential "
                   "customer list.",
    },
    {
        "key": "hearsay", "subject": "hearsay",
        "area": "Hearsay belongs to the law of evidence, which decides what a court may consider.",
        "definition": "Hearsay is an out-of-court statement offered in court to prove the truth of what it "
                      "asserts; it is generally inadmissible because the speaker cannot be cross-examined, "
                      "though many exceptions exist.",
        "elements": "Evidence is hearsay when it is a statement, made outside the current trial or hearing, "
                    "that is offered to prove that what the statement asserts is true.",
        "example": "For example, a witness testifies \"My neighbor told me she saw the defendant at the scene\" "
                   "to prove that the defendant was there.",
    },
    {
        "key": "standard_of_proof", "subject": "the standard of proof",
        "area": "The standard of proof belongs to the law of evidence, and it differs between criminal and civil "
                "cases.",
        "definition": "The standard of proof is the level of certainty needed to win a case: beyond a reasonable "
                      "doubt in criminal cases, and on the balance of probabilities in most civil cases.",
        "example": "For example, a person acquitted of assault in a criminal trial can still be found liable "
                   "for the same assault in a civil claim, because the civil standard is lower.",
    },
    {
        "key": "presumption_of_innocence", "subject": "the presumption of innocence",
        "area": "The presumption of innocence belongs to criminal law and criminal procedure, and many "
                "constitutions protect it.",
        "definition": "The presumption of innocence is the principle that an accused person is treated as "
                      "innocent until proven guilty, so the prosecution carries the burden of proof.",
        "example": "For example, a defendant does not have to prove that they did not commit the crime; the "
                   "prosecution must prove that they did.",
    },
    {
        "key": "habeas_corpus", "subject": "habeas corpus",
        "area": "Habeas corpus belongs to constitutional law and criminal procedure, as a protection of personal "
                "liberty.",
        "definition": "Habeas corpus is a court order requiring that a detained person be brought before a "
                      "court so the lawfulness of the detention can be examined; it protects against unlawful "
                      "imprisonment.",
        "example": "For example, a person held by the authorities without charge petitions for habeas corpus, "
                   "and the court orders release if no lawful basis is shown.",
    },
    {
        "key": "statute_of_limitations", "subject": "a statute of limitations",
        "area": "A statute of limitations belongs to civil and criminal procedure, as a time limit for bringing "
                "cases.",
        "definition": "A statute of limitations is a law setting the maximum time after an event within which "
                      "legal proceedings may be started; the period depends on the type of claim and the "
                      "jurisdiction.",
        "example": "For example, if the limitation period for a contract claim is six years, a claim brought "
                   "eight years after the breach can be dismissed as time-barred.",
    },
    {
        "key": "res_judicata", "subject": "res judicata",
        "area": "Res judicata belongs to civil procedure, as a rule on the finality of judgments.",
        "definition": "Res judicata is the principle that once a court has given a final judgment on the "
                      "merits, the same parties cannot litigate the same claim again.",
        "example": "For example, after losing a lawsuit over an unpaid invoice, a supplier cannot sue the same "
                   "customer again over the same invoice.",
    },
    {
        "key": "precedent", "subject": "the doctrine of precedent (stare decisis)",
        "area": "The doctrine of precedent (stare decisis) belongs to the legal method of common-law systems and "
                "applies in every area of law.",
        "definition": "The doctrine of precedent means courts follow the legal principles decided in earlier "
                      "cases, and lower courts are bound by the decisions of higher courts in the same "
                      "hierarchy.",
        "example": "For example, once the highest court has decided how a statute should be interpreted, lower "
                   "courts must apply that interpretation in later cases.",
    },
    {
        "key": "double_jeopardy", "subject": "double jeopardy",
        "area": "Double jeopardy belongs to criminal procedure and constitutional law, as a protection for the "
                "accused.",
        "definition": "Double jeopardy is the principle that a person cannot be prosecuted twice for the same "
                      "offense after an acquittal or conviction, or punished twice for it.",
        "example": "For example, a defendant acquitted of a murder generally cannot be tried again for the same "
                   "killing, even if new evidence is found later.",
    },
    {
        "key": "mens_rea", "subject": "mens rea",
        "area": "Mens rea belongs to criminal law, as the mental element of an offense.",
        "definition": "Mens rea is the mental element of a crime, the \"guilty mind\", such as intention, "
                      "knowledge or recklessness, which the prosecution usually must prove along with the act.",
        "example": "For example, someone who takes another person's umbrella by mistake, honestly believing it "
                   "is their own, lacks the mens rea for theft.",
    },
    {
        "key": "actus_reus", "subject": "actus reus",
        "area": "Actus reus belongs to criminal law, as the physical element of an offense.",
        "definition": "Actus reus is the physical element of a crime, the \"guilty act\": a voluntary act, or a "
                      "failure to act where there is a duty to act, with any required circumstances and result.",
        "example": "For example, in theft the actus reus is taking property belonging to another; an "
                   "involuntary movement during a seizure is not a voluntary act.",
    },
    {
        "key": "self_defense", "subject": "self-defense",
        "area": "Self-defense belongs to criminal law as a defense, and it also applies in tort law.",
        "definition": "Self-defense is a defense that allows a person to use reasonable force to protect "
                      "themselves or others from an imminent threat of unlawful force.",
        "elements": "Self-defense generally requires an honest and reasonable belief in an imminent threat of "
                    "unlawful force, and force that was necessary and proportionate to that threat.",
        "example": "For example, pushing away an attacker who is about to punch you is self-defense; hitting "
                   "them again after they have run away is not.",
    },
    {
        "key": "larceny", "subject": "larceny",
        "area": "Larceny belongs to criminal law, among the property offenses.",
        "definition": "Larceny is the common-law crime of taking and carrying away another person's personal "
                      "property without consent, intending to deprive them of it permanently.",
        "elements": "Larceny requires a taking and carrying away of personal property belonging to another, "
                    "without consent, with the intent to permanently deprive the owner of it.",
        "example": "For example, picking up someone's phone from a cafe table and walking off with it, "
                   "intending to keep it, is larceny.",
    },
    {
        "key": "burglary", "subject": "burglary at common law",
        "area": "Burglary at common law belongs to criminal law, among the offenses against property and the "
                "home.",
        "definition": "At common law, burglary was breaking and entering the dwelling of another at night with "
                      "intent to commit a felony inside; modern statutes extend it to other buildings and times.",
        "elements": "Common-law burglary requires a breaking, an entering, of the dwelling house of another, at "
                    "night, with the intent to commit a felony inside.",
        "example": "For example, forcing open a window of someone's home at night to get in and steal jewelry "
                   "is burglary at common law.",
    },
]
