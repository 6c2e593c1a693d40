"""Legal fact table, part 1: contract law and torts (civil wrongs).

One row per concept; each field (area, definition, elements, example) is the single canonical answer to
every paraphrase of that question.
`elements` is left out where a concept has no standard list of elements.
"""

from __future__ import annotations

CONTRACT_AND_TORT_CONCEPTS: list[dict] = [
    {
        "key": "valid_contract", "subject": "a valid contract",
        "area": "A valid contract is a core concept of contract law, part of private civil law.",
        "definition": "A contract is a legally enforceable agreement between parties that creates obligations "
                      "each can enforce in court if the other fails to perform.",
        "elements": "A valid contract generally needs an offer, an acceptance of that offer, consideration, an "
                    "intention to create legal relations, parties with capacity and a lawful purpose.",
        "example": "For example, agreeing to buy a neighbor's used car for $3000, with both parties intending "
                   "to be bound, forms a valid contract.",
    },
    {
        "key": "offer", "subject": "a contractual offer",
        "area": "A contractual offer belongs to contract law, specifically the rules on forming a contract.",
        "definition": "An offer is a definite proposal to be bound on specific terms once the other party "
                      "accepts; it differs from an invitation to treat, such as most advertisements, which only "
                      "invites offers.",
        "example": "For example, writing to someone \"I will sell you my bicycle for $200\" is an offer, while "
                   "a price tag in a shop window is usually only an invitation to treat.",
    },
    {
        "key": "acceptance", "subject": "acceptance of an offer",
        "area": "Acceptance of an offer belongs to contract law, specifically the rules on forming a contract.",
        "definition": "Acceptance is unconditional agreement to all the terms of an offer, communicated to the "
                      "offeror; a reply that changes the terms is a counter-offer, which rejects the original.",
        "elements": "Acceptance must be made by the person the offer was made to, match the offer's terms "
                    "exactly, be communicated to the offeror and happen while the offer is still open.",
        "example": "For example, if A offers to sell a bike for $200 and B replies \"I accept\", a contract is "
                   "formed; if B replies \"I will pay $150\", that is a counter-offer.",
    },
    {
        "key": "consideration", "subject": "consideration in contract law",
        "area": "Consideration belongs to contract law; it decides whether a promise is enforceable as a "
                "contract.",
        "definition": "Consideration is something of value given in exchange for a promise, such as money, "
                      "goods, services or a promise to act or not act; it must be bargained for and generally "
                      "cannot be past.",
        "example": "For example, when someone pays $500 for a used bicycle, the money is consideration for the "
                   "bicycle and the bicycle is consideration for the money.",
    },
    {
        "key": "promissory_estoppel", "subject": "promissory estoppel",
        "area": "Promissory estoppel belongs to contract law and equity, as an exception to the need for "
                "consideration.",
        "definition": "Promissory estoppel is a doctrine that can stop a person from going back on a promise, "
                      "even without consideration, when the other party reasonably relied on it to their "
                      "detriment.",
        "elements": "Promissory estoppel generally requires a clear promise, reasonable and foreseeable reliance "
                    "on it by the promisee, a detriment caused by that reliance, and injustice unless the "
                    "promise is enforced.",
        "example": "For example, an employer promises a retiring employee a lifetime pension, the employee "
                   "retires relying on it, and a court stops the employer from withdrawing the promise.",
    },
    {
        "key": "breach_of_contract", "subject": "breach of contract",
        "area": "Breach of contract belongs to contract law, a branch of civil law.",
        "definition": "Breach of contract is a failure, without lawful excuse, to perform a promise that forms "
                      "part of a contract; remedies include damages and sometimes specific performance.",
        "elements": "A claim for breach of contract requires a valid contract, performance or readiness to "
                    "perform by the claimant, a failure to perform by the defendant, and resulting loss.",
        "example": "For example, a builder agrees to finish a kitchen by June 1 but abandons the job halfway, "
                   "so the owner sues for the extra cost of hiring another builder.",
    },
    {
        "key": "misrepresentation", "subject": "misrepresentation",
        "area": "Misrepresentation belongs to contract law, among the factors that can make a contract voidable, "
                "and overlaps with tort law.",
        "definition": "Misrepresentation is a false statement of fact by one party that induces the other to "
                      "enter a contract; the misled party can usually rescind the contract and sometimes claim "
                      "damages.",
        "elements": "Misrepresentation requires a false statement of fact, not mere opinion or sales talk, made "
                    "by one party to the other, which induced that party to enter the contract.",
        "example": "For example, a seller says a car has never been in an accident when it has, and the buyer "
                   "purchases it relying on that statement.",
    },
    {
        "key": "duress", "subject": "duress in contract law",
        "area": "Duress belongs to contract law, among the factors that can make a contract voidable; duress "
                "is also a defense in criminal law.",
        "definition": "Duress is illegitimate pressure, such as threats of violence or unlawful threats to "
                      "property or business, that leaves a party no real choice but to agree; it makes the "
                      "contract voidable.",
        "example": "For example, a person signs a contract only because the other party threatened to harm "
                   "their family if they refused.",
    },
    {
        "key": "capacity", "subject": "capacity to contract",
        "area": "Capacity to contract belongs to contract law, specifically the rules on who can make a binding "
                "contract.",
        "definition": "Capacity is the legal ability to enter a binding contract; minors and people lacking "
                      "mental capacity have limited capacity, so their contracts may be voidable.",
        "example": "For example, a minor who signs a contract to buy an expensive car can generally cancel it, "
                   "though contracts for necessaries such as food may still be enforced.",
    },
    {
        "key": "specific_performance", "subject": "specific performance",
        "area": "Specific performance belongs to the law of remedies, as an equitable remedy for breach of "
                "contract.",
        "definition": "Specific performance is an equitable remedy in which a court orders a party to carry out "
                      "its contract instead of paying damages, used mainly when money would not be an adequate "
                      "remedy.",
        "example": "For example, when a seller refuses to complete the agreed sale of a particular house, a "
                   "court can order the sale to go ahead, because each piece of land is unique.",
    },
    {
        "key": "tort", "subject": "a tort",
        "area": "A tort is the basic concept of tort law, the branch of civil law dealing with civil wrongs.",
        "definition": "A tort is a civil wrong, other than a breach of contract, for which the injured person "
                      "can sue for compensation; a crime, by contrast, is prosecuted by the state and punished.",
        "example": "For example, carelessly crashing into someone's car is a tort for which the owner can sue; "
                   "if the driver was drunk, the same act is also a crime.",
    },
    {
        "key": "negligence", "subject": "negligence",
        "area": "Negligence belongs to tort law, where it is the most common basis for compensation claims.",
        "definition": "Negligence is a failure to take the care that a reasonable person would take in the "
                      "circumstances, causing harm to someone to whom a duty of care is owed.",
        "elements": "Negligence requires a duty of care owed to the claimant, a breach of that duty, causation "
                    "(the breach caused the harm, which was not too remote) and actual damage.",
        "example": "For example, a driver who is texting runs a red light and injures a pedestrian, breaching "
                   "the duty of care owed to other road users.",
    },
    {
        "key": "comparative_negligence", "subject": "comparative negligence",
        "area": "Comparative negligence belongs to tort law, as a defense that reduces damages in negligence "
                "claims.",
        "definition": "Comparative negligence reduces a claimant's damages in proportion to their own share of "
                      "fault; some places instead apply contributory negligence, which historically barred "
                      "recovery entirely.",
        "example": "For example, under pure comparative negligence, a pedestrian with $10000 of damages who was "
                   "20% at fault recovers $8000.",
    },
    {
        "key": "strict_liability", "subject": "strict liability",
        "area": "Strict liability belongs mainly to tort law, and some regulatory criminal offenses also use it.",
        "definition": "Strict liability is liability without proof of fault or intent, applied to activities "
                      "such as keeping wild animals, abnormally dangerous activities and, in many systems, "
                      "defective products.",
        "example": "For example, a company using explosives for demolition damages a nearby house and is liable "
                   "even though it took every reasonable precaution.",
    },
    {
        "key": "vicarious_liability", "subject": "vicarious liability",
        "area": "Vicarious liability belongs to tort law, and it is closely tied to employment relationships.",
        "definition": "Vicarious liability makes one person liable for another's wrong because of their "
                      "relationship, most commonly an employer for torts an employee commits in the course of "
                      "employment.",
        "elements": "Vicarious liability requires a relationship such as employment, a tort committed by the "
                    "employee, and a close connection between the tort and the employment.",
        "example": "For example, a delivery driver carelessly crashes while on a delivery round, and the "
                   "injured cyclist sues the driver's employer.",
    },
    {
        "key": "defamation", "subject": "defamation",
        "area": "Defamation belongs to tort law, where it protects a person's reputation.",
        "definition": "Defamation is communicating a false statement that harms a person's reputation; libel is "
                      "defamation in a lasting form such as writing, and slander is spoken.",
        "elements": "Defamation requires a defamatory statement that refers to the claimant and is published to "
                    "at least one third party; depending on the jurisdiction, falsity, fault and damage matter.",
        "example": "For example, a newspaper falsely reports that a local doctor was struck off for fraud, and "
                   "her patients leave.",
    },
    {
        "key": "battery", "subject": "the tort of battery",
        "area": "The tort of battery belongs to tort law, among the intentional torts against the person; "
                "battery can also be a crime.",
        "definition": "Battery is the intentional infliction of harmful or offensive physical contact on "
                      "another person without their consent.",
        "elements": "Battery requires an intentional act that causes direct physical contact with the claimant, "
                    "which is harmful or offensive, without consent or lawful justification.",
        "example": "For example, deliberately shoving someone out of a queue, or kissing someone without their "
                   "consent, is battery.",
    },
    {
        "key": "assault", "subject": "the tort of assault",
        "area": "The tort of assault belongs to tort law, among the intentional torts against the person; "
                "assault can also be a crime.",
        "definition": "Assault is an intentional act that makes another person reasonably fear immediate harmful "
                      "or offensive contact; no physical contact is needed.",
        "elements": "Assault requires an intentional act that causes the claimant a reasonable apprehension of "
                    "imminent harmful or offensive contact.",
        "example": "For example, swinging a fist at someone who sees it coming is assault, even if the blow "
                   "misses.",
    },
    {
        "key": "false_imprisonment", "subject": "false imprisonment",
        "area": "False imprisonment belongs to tort law, among the intentional torts against the person.",
        "definition": "False imprisonment is the intentional, unlawful restraint of a person's freedom of "
                      "movement within a bounded area, without consent or lawful authority.",
        "elements": "False imprisonment requires an intentional act that completely confines the claimant "
                    "within a bounded area, without consent and without lawful justification.",
        "example": "For example, a store guard locks a shopper in a back room for hours without reasonable "
                   "grounds to suspect theft.",
    },
    {
        "key": "trespass_to_land", "subject": "trespass to land",
        "area": "Trespass to land belongs to tort law, where it protects the possession of land.",
        "definition": "Trespass to land is intentionally entering, or putting an object on, land in another's "
                      "possession without permission; it is actionable without proof of damage.",
        "elements": "Trespass to land requires an intentional entry onto land, or causing an object to enter "
                    "it, where the land is in the claimant's possession, without consent or lawful authority.",
        "example": "For example, walking across a neighbor's fenced garden without permission, or dumping "
                   "rubbish on their land, is trespass.",
    },
    {
        "key": "private_nuisance", "subject": "private nuisance",
        "area": "Private nuisance belongs to tort law, where it protects the use and enjoyment of land.",
        "definition": "Private nuisance is a substantial and unreasonable interference with another person's "
                      "use or enjoyment of their land, such as persistent noise, smells or smoke.",
        "elements": "Private nuisance requires an interference with the use or enjoyment of land that is "
                    "substantial and unreasonable, suffered by a claimant with an interest in the land.",
        "example": "For example, a neighbor runs a loud generator every night, keeping the family next door "
                   "from sleeping.",
    },
]
