"""Healthcare fact table, part 2: brain and mind, gut, joints and bones, skin, ear-nose-throat and eyes.

Same row shape as healthcare_conditions.py. A row leaves out a field with no clear textbook answer.
"""

from __future__ import annotations

CONDITIONS_B: list[dict] = [
    {
        "key": "migraine", "subject": "migraine",
        "symptoms": "Migraine causes recurrent throbbing headaches, often on one side, with nausea and "
                    "sensitivity to light and sound, sometimes preceded by a visual aura.",
        "tests": "Migraine is diagnosed from the history and a normal neurological examination; brain imaging "
                 "is only needed when warning signs suggest another cause.",
        "treatment": "Migraine attacks are treated with pain relievers such as NSAIDs or with triptans, and "
                     "frequent migraines with preventive medicines such as propranolol or topiramate.",
        "specialist": "Migraine is managed by primary care or a neurologist.",
        "risk_factors": "Risk factors for migraine include a family history of migraine and female sex; common "
                        "triggers are stress, lack of sleep, hormonal changes and skipped meals.",
    },
    {
        "key": "stroke", "subject": "a stroke",
        "symptoms": "A stroke causes sudden face drooping, arm or leg weakness on one side, slurred speech, loss "
                    "of vision or sudden confusion; it is a medical emergency.",
        "tests": "A stroke is diagnosed with an urgent CT or MRI scan of the brain, which also shows whether it "
                 "is caused by a clot or by bleeding.",
        "treatment": "A stroke caused by a clot is treated urgently with clot-dissolving drugs or mechanical "
                     "clot removal, followed by antiplatelet medicine and rehabilitation.",
        "specialist": "A stroke is managed by a neurologist and a specialist stroke team.",
        "risk_factors": "Risk factors for stroke include high blood pressure, atrial fibrillation, smoking, "
                        "diabetes, high cholesterol and older age.",
    },
    {
        "key": "epilepsy", "subject": "epilepsy",
        "symptoms": "Epilepsy causes recurrent unprovoked seizures, such as convulsions, staring spells, sudden "
                    "jerking or brief loss of awareness.",
        "tests": "Epilepsy is diagnosed from a description of the seizures, an electroencephalogram (EEG) and "
                 "usually a brain MRI.",
        "treatment": "Epilepsy is treated with anti-seizure medicines such as levetiracetam, lamotrigine or "
                     "valproate; surgery is an option for some people whose seizures persist.",
        "specialist": "Epilepsy is managed by a neurologist.",
        "risk_factors": "Risk factors for epilepsy include head injury, stroke, brain infections, a family "
                        "history of epilepsy and developmental brain conditions.",
    },
    {
        "key": "parkinsons_disease", "subject": "Parkinson's disease",
        "symptoms": "Parkinson's disease causes a tremor at rest, slowness of movement, muscle stiffness and "
                    "problems with balance and walking.",
        "tests": "Parkinson's disease is diagnosed clinically by a neurological examination; a DaTscan can "
                 "support the diagnosis in unclear cases.",
        "treatment": "Parkinson's disease is treated with levodopa combined with carbidopa, or with dopamine "
                     "agonists, along with physiotherapy and exercise.",
        "specialist": "Parkinson's disease is managed by a neurologist.",
        "risk_factors": "Risk factors for Parkinson's disease include age over 60, male sex, a family history of "
                        "the disease and exposure to certain pesticides.",
    },
    {
        "key": "alzheimers_disease", "subject": "Alzheimer's disease",
        "symptoms": "Alzheimer's disease causes gradually worsening memory loss, especially of recent events, "
                    "confusion, trouble finding words and difficulty with planning.",
        "tests": "Alzheimer's disease is diagnosed with cognitive testing, blood tests and a brain CT or MRI to "
                 "exclude other causes, sometimes with PET scans or spinal fluid markers.",
        "treatment": "Alzheimer's disease has no cure; cholinesterase inhibitors such as donepezil and memantine "
                     "can ease symptoms, together with support for patients and carers.",
        "specialist": "Alzheimer's disease is managed by a neurologist, a geriatrician or an old-age "
                      "psychiatrist.",
        "risk_factors": "Risk factors for Alzheimer's disease include older age, a family history, the APOE e4 "
                        "gene and cardiovascular risk factors.",
    },
    {
        "key": "depression", "subject": "major depression",
        "symptoms": "Major depression causes a persistent low mood or loss of interest for at least two weeks, "
                    "with changes in sleep and appetite, tiredness, poor concentration and feelings of "
                    "worthlessness.",
        "tests": "Major depression is diagnosed through a clinical interview against standard criteria, often "
                 "with a questionnaire such as the PHQ-9 and blood tests to exclude physical causes.",
        "treatment": "Major depression is treated with psychotherapy such as cognitive behavioral therapy, "
                     "antidepressants such as SSRIs, or both.",
        "specialist": "Major depression is treated by a psychiatrist or psychologist, often alongside a primary "
                      "care doctor.",
        "risk_factors": "Risk factors for major depression include a family history, stressful life events, "
                        "chronic illness, substance misuse and previous episodes.",
    },
    {
        "key": "generalized_anxiety_disorder", "subject": "generalized anxiety disorder",
        "symptoms": "Generalized anxiety disorder causes excessive, hard-to-control worry on most days for at "
                    "least six months, with restlessness, tiredness, irritability, muscle tension and poor sleep.",
        "tests": "Generalized anxiety disorder is diagnosed through a clinical interview, often with the GAD-7 "
                 "questionnaire, after excluding physical causes such as an overactive thyroid.",
        "treatment": "Generalized anxiety disorder is treated with cognitive behavioral therapy and medicines "
                     "such as SSRIs or SNRIs.",
        "specialist": "Generalized anxiety disorder is treated by a psychiatrist or psychologist, often "
                      "alongside primary care.",
        "risk_factors": "Risk factors for generalized anxiety disorder include a family history, stressful or "
                        "traumatic experiences, female sex and other mental health conditions.",
    },
    {
        "key": "gerd", "subject": "gastroesophageal reflux disease (GERD)",
        "symptoms": "GERD causes heartburn, regurgitation of sour stomach contents and chest discomfort, "
                    "often after meals or when lying down.",
        "tests": "GERD is often diagnosed from typical symptoms that improve with acid-suppressing medicine; "
                 "an upper endoscopy or esophageal pH monitoring is used when unclear.",
        "treatment": "GERD is treated with lifestyle changes such as smaller meals and weight loss, and with "
                     "acid-reducing medicines, usually proton pump inhibitors such as omeprazole.",
        "specialist": "GERD is managed by primary care or a gastroenterologist (digestive system specialist).",
        "risk_factors": "Risk factors for GERD include obesity, pregnancy, smoking, a hiatal hernia and large or "
                        "late meals.",
    },
    {
        "key": "celiac_disease", "subject": "celiac disease",
        "symptoms": "Celiac disease can cause diarrhea, bloating, abdominal pain, weight loss, tiredness and "
                    "anemia after eating gluten.",
        "tests": "Celiac disease is diagnosed with a blood test for tissue transglutaminase antibodies while "
                 "eating gluten, confirmed by a small-intestine biopsy during endoscopy.",
        "treatment": "Celiac disease is treated with a strict, lifelong gluten-free diet.",
        "specialist": "Celiac disease is managed by a gastroenterologist, often with a dietitian.",
        "risk_factors": "Risk factors for celiac disease include a family history of it, type 1 diabetes and "
                        "other autoimmune diseases.",
    },
    {
        "key": "irritable_bowel_syndrome", "subject": "irritable bowel syndrome (IBS)",
        "symptoms": "IBS causes recurrent abdominal pain linked to bowel movements, bloating and diarrhea, "
                    "constipation or both.",
        "tests": "IBS is diagnosed from typical symptoms after blood and stool tests exclude other conditions "
                 "such as celiac disease or inflammatory bowel disease.",
        "treatment": "IBS is managed with diet changes such as a low-FODMAP diet, stress management and "
                     "medicines for symptoms such as antispasmodics or laxatives.",
        "specialist": "IBS is managed by primary care or a gastroenterologist.",
        "risk_factors": "Risk factors for IBS include female sex, age under 50, stress, a previous gut infection "
                        "and a family history.",
    },
    {
        "key": "appendicitis", "subject": "appendicitis",
        "symptoms": "Appendicitis typically starts as pain around the navel that moves to the lower right "
                    "abdomen, with nausea, vomiting, loss of appetite and fever.",
        "tests": "Appendicitis is diagnosed by examination, blood tests showing raised white cells and an "
                 "ultrasound or CT scan.",
        "treatment": "Appendicitis is usually treated by surgically removing the appendix (appendectomy) along "
                     "with antibiotics.",
        "specialist": "Appendicitis is treated by a general surgeon.",
    },
    {
        "key": "osteoarthritis", "subject": "osteoarthritis",
        "symptoms": "Osteoarthritis causes joint pain that worsens with use, brief stiffness after rest, "
                    "reduced movement and sometimes swelling or a grating feeling.",
        "tests": "Osteoarthritis is diagnosed from symptoms and examination, with X-rays showing joint space "
                 "narrowing and bone spurs.",
        "treatment": "Osteoarthritis is treated with exercise, physiotherapy, weight loss and pain relief such "
                     "as topical or oral NSAIDs; severe cases may need joint replacement.",
        "specialist": "Osteoarthritis is managed by primary care, a rheumatologist or an orthopedic surgeon.",
        "risk_factors": "Risk factors for osteoarthritis include older age, obesity, previous joint injury, "
                        "female sex and family history.",
    },
    {
        "key": "rheumatoid_arthritis", "subject": "rheumatoid arthritis",
        "symptoms": "Rheumatoid arthritis causes painful, swollen joints, often the small joints of both hands "
                    "and feet, with morning stiffness lasting over an hour and tiredness.",
        "tests": "Rheumatoid arthritis is diagnosed with blood tests for rheumatoid factor, anti-CCP "
                 "antibodies and inflammation markers, plus joint examination and X-rays.",
        "treatment": "Rheumatoid arthritis is treated with disease-modifying drugs, usually methotrexate first, "
                     "with short courses of steroids or NSAIDs for flares.",
        "specialist": "Rheumatoid arthritis is managed by a rheumatologist.",
        "risk_factors": "Risk factors for rheumatoid arthritis include female sex, smoking, a family history "
                        "and middle age.",
    },
    {
        "key": "gout", "subject": "gout",
        "symptoms": "Gout causes sudden attacks of severe pain, redness and swelling in a joint, most often the "
                    "big toe, frequently starting at night.",
        "tests": "Gout is diagnosed by finding urate crystals in fluid drawn from the joint, supported by a "
                 "blood test for uric acid.",
        "treatment": "Gout attacks are treated with NSAIDs, colchicine or steroids, and repeated attacks with "
                     "urate-lowering drugs such as allopurinol.",
        "specialist": "Gout is managed by primary care or a rheumatologist.",
        "risk_factors": "Risk factors for gout include high uric acid levels, male sex, alcohol, a diet rich in "
                        "red meat and seafood, obesity, diuretics and kidney disease.",
    },
    {
        "key": "osteoporosis", "subject": "osteoporosis",
        "symptoms": "Osteoporosis usually causes no symptoms until a bone breaks; spine fractures can lead to "
                    "back pain, loss of height and a stooped posture.",
        "tests": "Osteoporosis is diagnosed with a DEXA bone density scan; a T-score of -2.5 or lower "
                 "indicates osteoporosis.",
        "treatment": "Osteoporosis is treated with calcium and vitamin D, weight-bearing exercise, fall "
                     "prevention and medicines such as bisphosphonates, for example alendronate.",
        "specialist": "Osteoporosis is managed by primary care, an endocrinologist or a rheumatologist.",
        "risk_factors": "Risk factors for osteoporosis include being a woman after menopause, older age, low body "
                        "weight, smoking, long-term steroid use and a family history.",
    },
    {
        "key": "psoriasis", "subject": "psoriasis",
        "symptoms": "Psoriasis causes red, raised, scaly patches of skin, often on the elbows, knees, scalp and "
                    "lower back, which may itch; nails can become pitted.",
        "tests": "Psoriasis is diagnosed by examining the skin and nails; a skin biopsy is occasionally needed.",
        "treatment": "Psoriasis is treated with topical corticosteroids and vitamin D creams, and with "
                     "phototherapy or systemic and biologic drugs for more severe disease.",
        "specialist": "Psoriasis is managed by a dermatologist (skin specialist).",
        "risk_factors": "Risk factors for psoriasis include a family history, stress, smoking, obesity and "
                        "certain infections such as strep throat.",
    },
    {
        "key": "eczema", "subject": "atopic eczema",
        "symptoms": "Atopic eczema causes dry, itchy, inflamed skin, often in the creases of the elbows and "
                    "knees, that flares up from time to time.",
        "tests": "Atopic eczema is diagnosed from the appearance of the skin and the history; allergy tests "
                 "are sometimes used to look for triggers.",
        "treatment": "Atopic eczema is treated with regular moisturizers (emollients), topical corticosteroids "
                     "for flares and avoiding triggers such as harsh soaps.",
        "specialist": "Atopic eczema is managed by primary care or a dermatologist.",
        "risk_factors": "Risk factors for atopic eczema include a personal or family history of eczema, asthma "
                        "or hay fever.",
    },
    {
        "key": "allergic_rhinitis", "subject": "hay fever (allergic rhinitis)",
        "symptoms": "Hay fever causes sneezing, a runny or blocked nose, and itchy, watery eyes after contact "
                    "with allergens such as pollen.",
        "tests": "Hay fever is diagnosed from the history and can be confirmed with a skin prick test or an "
                 "allergen-specific IgE blood test.",
        "treatment": "Hay fever is treated by avoiding allergens, non-drowsy antihistamines and corticosteroid "
                     "nasal sprays.",
        "specialist": "Hay fever is managed by primary care or an allergist.",
        "risk_factors": "Risk factors for hay fever include a family history of allergies, having asthma or "
                        "eczema and exposure to allergens such as pollen, dust mites or pets.",
    },
    {
        "key": "strep_throat", "subject": "strep throat",
        "symptoms": "Strep throat causes a sudden sore throat, pain when swallowing, fever, swollen tonsils "
                    "with white patches and tender neck glands, usually without a cough.",
        "tests": "Strep throat is diagnosed with a rapid strep test or a throat culture from a swab.",
        "treatment": "Strep throat is treated with antibiotics, usually penicillin or amoxicillin.",
        "specialist": "Strep throat is treated in primary care; an ear, nose and throat specialist "
                      "(otolaryngologist) sees repeated infections.",
        "risk_factors": "Strep throat is most common in children aged 5 to 15 and spreads through close contact "
                        "in crowded places such as schools.",
    },
    {
        "key": "glaucoma", "subject": "glaucoma",
        "symptoms": "The most common type of glaucoma has no early symptoms and slowly causes loss of "
                    "side (peripheral) vision.",
        "tests": "Glaucoma is diagnosed by an eye examination measuring eye pressure, examining the optic nerve "
                 "and testing the visual field.",
        "treatment": "Glaucoma is treated with eye drops that lower eye pressure, such as prostaglandin "
                     "analogues, and with laser treatment or surgery if needed.",
        "specialist": "Glaucoma is managed by an ophthalmologist (eye specialist).",
        "risk_factors": "Risk factors for glaucoma include age over 60, a family history, high eye pressure, "
                        "African ancestry and diabetes.",
    },
    {
        "key": "cataracts", "subject": "cataracts",
        "symptoms": "Cataracts cause cloudy or blurred vision, glare from lights, faded colors and poor night "
                    "vision.",
        "tests": "Cataracts are diagnosed with an eye examination, including a slit-lamp examination of the "
                 "lens.",
        "treatment": "Cataracts are treated with surgery that replaces the cloudy lens with a clear artificial "
                     "lens.",
        "specialist": "Cataracts are treated by an ophthalmologist (eye specialist).",
        "risk_factors": "Risk factors for cataracts include older age, diabetes, smoking, sunlight exposure and "
                        "long-term steroid use.",
    },
]
