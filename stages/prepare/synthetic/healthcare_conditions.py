"""Healthcare fact table, part 1: heart, lungs, hormones, blood and kidneys.

One row per condition; each field is the single canonical answer (1-2 sentences) to every paraphrase of that
question. Statements are mainstream, uncontroversial textbook facts, kept short for a small model.
"""

from __future__ import annotations

CONDITIONS_A: list[dict] = [
    {
        "key": "asthma", "subject": "asthma",
        "symptoms": "Common symptoms of asthma include wheezing, shortness of breath, chest tightness and "
                    "coughing, often worse at night or with exercise.",
        "tests": "Asthma is diagnosed with spirometry that shows airflow obstruction improving after a "
                 "bronchodilator, sometimes with peak flow monitoring over several weeks.",
        "treatment": "Asthma is treated with inhaled corticosteroids for long-term control and a quick-relief "
                     "bronchodilator inhaler such as albuterol (salbutamol) for symptoms, plus avoiding triggers.",
        "specialist": "Asthma is managed by a pulmonologist (lung specialist) or an allergist, with routine care "
                      "often from a primary care doctor.",
        "risk_factors": "Risk factors for asthma include a family history of asthma or allergies, eczema or hay "
                        "fever, exposure to tobacco smoke, air pollution and obesity.",
    },
    {
        "key": "copd", "subject": "chronic obstructive pulmonary disease (COPD)",
        "symptoms": "COPD causes a long-lasting cough with mucus, shortness of breath on exertion, wheezing and "
                    "frequent chest infections.",
        "tests": "COPD is diagnosed with spirometry showing airflow limitation that does not fully reverse after "
                 "a bronchodilator, often with a chest X-ray to rule out other causes.",
        "treatment": "COPD is managed by stopping smoking, inhaled long-acting bronchodilators, pulmonary "
                     "rehabilitation and vaccinations against flu and pneumococcus.",
        "specialist": "COPD is managed by a pulmonologist (lung specialist) together with primary care.",
        "risk_factors": "The main risk factor for COPD is smoking; others are long-term exposure to dust, fumes "
                        "or air pollution and the genetic condition alpha-1 antitrypsin deficiency.",
    },
    {
        "key": "pneumonia", "subject": "pneumonia",
        "symptoms": "Pneumonia typically causes a cough with phlegm, fever, chills, shortness of breath and "
                    "chest pain that is worse when breathing in.",
        "tests": "Pneumonia is confirmed with a chest X-ray, supported by a physical exam, blood tests, oxygen "
                 "saturation and sometimes a sputum culture.",
        "treatment": "Bacterial pneumonia is treated with antibiotics such as amoxicillin, along with rest and "
                     "fluids; severe cases need hospital care and oxygen.",
        "specialist": "Pneumonia is usually treated by a primary care or hospital doctor, with a pulmonologist "
                      "involved in severe or recurrent cases.",
        "risk_factors": "Risk factors for pneumonia include age over 65, young childhood, smoking, chronic lung "
                        "or heart disease and a weakened immune system.",
    },
    {
        "key": "influenza", "subject": "influenza",
        "symptoms": "Influenza usually starts suddenly with fever, muscle aches, headache, tiredness, dry cough "
                    "and sore throat.",
        "tests": "Influenza is often diagnosed from symptoms during flu season and can be confirmed with a rapid "
                 "antigen or PCR test on a nose or throat swab.",
        "treatment": "Influenza is treated with rest, fluids and fever reducers; antivirals such as oseltamivir "
                     "help high-risk patients, ideally started within 48 hours of symptoms.",
        "specialist": "Influenza is usually managed by a primary care doctor; an infectious disease specialist "
                      "may help with severe or complicated cases.",
        "risk_factors": "People at higher risk of severe influenza include adults over 65, young children, "
                        "pregnant women and people with chronic illness or weak immunity.",
    },
    {
        "key": "tuberculosis", "subject": "tuberculosis",
        "symptoms": "Active tuberculosis typically causes a cough lasting more than three weeks, sometimes with "
                    "blood, plus fever, night sweats and weight loss.",
        "tests": "Tuberculosis is diagnosed with a chest X-ray and sputum tests (microscopy, culture or "
                 "molecular tests); a skin test or interferon-gamma blood test detects infection.",
        "treatment": "Active tuberculosis is treated with several antibiotics taken together for months, "
                     "usually six, starting with isoniazid, rifampicin, pyrazinamide and ethambutol.",
        "specialist": "Tuberculosis is treated by an infectious disease specialist or a pulmonologist, often "
                      "with public health services.",
        "risk_factors": "Risk factors for tuberculosis include close contact with an infected person, HIV or "
                        "other weakened immunity, crowded living conditions and malnutrition.",
    },
    {
        "key": "hypertension", "subject": "high blood pressure (hypertension)",
        "symptoms": "High blood pressure usually causes no symptoms, which is why it is called a silent "
                    "condition; very high readings can cause headaches or blurred vision.",
        "tests": "Hypertension is diagnosed from repeated blood pressure measurements, often confirmed with "
                 "home or 24-hour ambulatory monitoring.",
        "treatment": "Hypertension is treated with lifestyle changes such as less salt, exercise and weight "
                     "loss, and medicines such as ACE inhibitors, calcium channel blockers or thiazide diuretics.",
        "specialist": "Hypertension is usually managed by a primary care doctor, with a cardiologist or "
                      "nephrologist for difficult cases.",
        "risk_factors": "Risk factors for hypertension include older age, family history, obesity, a high-salt "
                        "diet, physical inactivity, heavy alcohol use and smoking.",
    },
    {
        "key": "coronary_artery_disease", "subject": "coronary artery disease",
        "symptoms": "Coronary artery disease often causes chest pain or pressure (angina) during exertion that "
                    "eases with rest, along with shortness of breath and tiredness.",
        "tests": "Coronary artery disease is assessed with an ECG, a stress test and coronary angiography, "
                 "either CT or invasive catheter angiography.",
        "treatment": "Coronary artery disease is treated with lifestyle changes, aspirin, statins and "
                     "anti-anginal drugs such as beta-blockers, and stents or bypass surgery when needed.",
        "specialist": "Coronary artery disease is managed by a cardiologist (heart specialist).",
        "risk_factors": "Risk factors for coronary artery disease include smoking, high cholesterol, high blood "
                        "pressure, diabetes, obesity, inactivity and a family history of heart disease.",
    },
    {
        "key": "heart_failure", "subject": "heart failure",
        "symptoms": "Heart failure causes shortness of breath, especially when lying flat, swollen ankles and "
                    "legs, tiredness and reduced ability to exercise.",
        "tests": "Heart failure is diagnosed with an echocardiogram, a BNP or NT-proBNP blood test, an ECG and "
                 "a chest X-ray.",
        "treatment": "Heart failure is treated with diuretics to remove excess fluid and medicines such as ACE "
                     "inhibitors and beta-blockers, plus limits on salt and regular follow-up.",
        "specialist": "Heart failure is managed by a cardiologist (heart specialist).",
        "risk_factors": "Risk factors for heart failure include coronary artery disease, a previous heart "
                        "attack, high blood pressure, diabetes, obesity and heart valve disease.",
    },
    {
        "key": "atrial_fibrillation", "subject": "atrial fibrillation",
        "symptoms": "Atrial fibrillation can cause palpitations, an irregular heartbeat, breathlessness, "
                    "dizziness and tiredness, though some people have no symptoms.",
        "tests": "Atrial fibrillation is diagnosed with an ECG showing an irregularly irregular rhythm, "
                 "sometimes using a 24-hour Holter monitor to catch episodes.",
        "treatment": "Atrial fibrillation is treated by controlling heart rate or rhythm, for example with "
                     "beta-blockers, and by anticoagulants that lower the risk of stroke.",
        "specialist": "Atrial fibrillation is managed by a cardiologist, sometimes a heart rhythm specialist "
                      "(electrophysiologist).",
        "risk_factors": "Risk factors for atrial fibrillation include older age, high blood pressure, heart "
                        "disease, heavy alcohol use, obesity, sleep apnea and an overactive thyroid.",
    },
    {
        "key": "high_cholesterol", "subject": "high cholesterol",
        "symptoms": "High cholesterol usually causes no symptoms and is found on a blood test; it matters "
                    "because it raises the risk of heart attack and stroke.",
        "tests": "High cholesterol is diagnosed with a lipid panel blood test measuring LDL, HDL, total "
                 "cholesterol and triglycerides.",
        "treatment": "High cholesterol is treated with a healthy diet, exercise and weight control, and statins "
                     "are the first-line medicine when drug treatment is needed.",
        "specialist": "High cholesterol is usually managed in primary care, with a cardiologist or lipid "
                      "specialist for very high or inherited forms.",
        "risk_factors": "Risk factors for high cholesterol include a diet high in saturated fat, obesity, "
                        "inactivity, smoking, diabetes and inherited familial hypercholesterolemia.",
    },
    {
        "key": "type_2_diabetes", "subject": "type 2 diabetes",
        "symptoms": "Type 2 diabetes can cause increased thirst, frequent urination, tiredness, blurred vision "
                    "and slow-healing wounds, but often develops with few symptoms.",
        "tests": "Type 2 diabetes is diagnosed with blood tests: HbA1c, fasting plasma glucose or an oral "
                 "glucose tolerance test.",
        "treatment": "Type 2 diabetes is treated with diet, exercise and weight loss, and metformin is the usual "
                     "first-line medicine.",
        "specialist": "Type 2 diabetes is managed by primary care and an endocrinologist (hormone specialist).",
        "risk_factors": "Risk factors for type 2 diabetes include obesity, physical inactivity, family history, "
                        "older age and a history of gestational diabetes.",
    },
    {
        "key": "type_1_diabetes", "subject": "type 1 diabetes",
        "symptoms": "Type 1 diabetes causes excessive thirst, frequent urination, unexplained weight loss, "
                    "tiredness and blurred vision, often developing over a few weeks.",
        "tests": "Type 1 diabetes is diagnosed with blood glucose and HbA1c tests, with autoantibody tests and "
                 "ketone checks to confirm the type.",
        "treatment": "Type 1 diabetes is treated with lifelong insulin, by injections or a pump, together with "
                     "regular blood glucose monitoring.",
        "specialist": "Type 1 diabetes is managed by an endocrinologist (hormone specialist) and a diabetes "
                      "care team.",
        "risk_factors": "Risk factors for type 1 diabetes include a family history of the disease and certain "
                        "inherited genes; it often begins in childhood or young adulthood.",
    },
    {
        "key": "hypothyroidism", "subject": "hypothyroidism",
        "symptoms": "Hypothyroidism causes tiredness, weight gain, feeling cold, constipation, dry skin and "
                    "thinning hair.",
        "tests": "Hypothyroidism is diagnosed with blood tests showing a high TSH and a low free T4.",
        "treatment": "Hypothyroidism is treated with daily levothyroxine, a synthetic thyroid hormone, with the "
                     "dose adjusted by blood tests.",
        "specialist": "Hypothyroidism is managed by primary care or an endocrinologist (hormone specialist).",
        "risk_factors": "Risk factors for hypothyroidism include female sex, older age, autoimmune disease such "
                        "as Hashimoto's thyroiditis, family history and previous thyroid treatment.",
    },
    {
        "key": "hyperthyroidism", "subject": "hyperthyroidism",
        "symptoms": "Hyperthyroidism causes weight loss despite a normal appetite, a fast heartbeat, heat "
                    "intolerance, tremor, sweating and anxiety.",
        "tests": "Hyperthyroidism is diagnosed with blood tests showing a low TSH and high thyroid hormones, "
                 "often followed by antibody tests or a thyroid uptake scan.",
        "treatment": "Hyperthyroidism is treated with antithyroid drugs such as methimazole, beta-blockers for "
                     "symptoms, radioactive iodine or thyroid surgery.",
        "specialist": "Hyperthyroidism is managed by an endocrinologist (hormone specialist).",
        "risk_factors": "Risk factors for hyperthyroidism include Graves' disease, female sex, a family history "
                        "of thyroid disease and thyroid nodules.",
    },
    {
        "key": "iron_deficiency_anemia", "subject": "iron deficiency anemia",
        "symptoms": "Iron deficiency anemia causes tiredness, weakness, pale skin, shortness of breath on "
                    "exertion and brittle nails.",
        "tests": "Iron deficiency anemia is diagnosed with a complete blood count showing low hemoglobin and "
                 "small red cells, and a low serum ferritin.",
        "treatment": "Iron deficiency anemia is treated with oral iron supplements and by finding and treating "
                     "the cause, such as blood loss or a poor diet.",
        "specialist": "Iron deficiency anemia is usually managed in primary care, with a hematologist or a "
                      "gastroenterologist when the cause is unclear.",
        "risk_factors": "Risk factors for iron deficiency anemia include heavy menstrual periods, pregnancy, "
                        "bleeding from the gut, a low-iron diet and poor absorption.",
    },
    {
        "key": "chronic_kidney_disease", "subject": "chronic kidney disease",
        "symptoms": "Chronic kidney disease often has no symptoms early on; later it can cause tiredness, "
                    "swelling of the legs, itching, nausea and changes in urination.",
        "tests": "Chronic kidney disease is diagnosed with a blood test for creatinine to estimate the "
                 "glomerular filtration rate (eGFR) and a urine test for albumin.",
        "treatment": "Chronic kidney disease is managed by controlling blood pressure and blood sugar, often with "
                     "ACE inhibitors or ARBs, and by dialysis or transplant if the kidneys fail.",
        "specialist": "Chronic kidney disease is managed by a nephrologist (kidney specialist).",
        "risk_factors": "Risk factors for chronic kidney disease include diabetes, high blood pressure, older "
                        "age, obesity and a family history of kidney disease.",
    },
    {
        "key": "kidney_stones", "subject": "kidney stones",
        "symptoms": "Kidney stones cause sudden severe pain in the side or back that spreads to the groin, blood "
                    "in the urine, nausea and an urge to urinate.",
        "tests": "Kidney stones are diagnosed with a non-contrast CT scan or an ultrasound, together with a "
                 "urine test.",
        "treatment": "Small kidney stones are treated with pain relief and fluids until they pass; larger ones "
                     "may need shock wave lithotripsy or ureteroscopy.",
        "specialist": "Kidney stones are treated by a urologist.",
        "risk_factors": "Risk factors for kidney stones include not drinking enough fluids, a high-salt diet, "
                        "obesity, a family history of stones and gout.",
    },
    {
        "key": "urinary_tract_infection", "subject": "a urinary tract infection",
        "symptoms": "A urinary tract infection causes burning when urinating, a frequent urgent need to urinate, "
                    "cloudy or strong-smelling urine and lower abdominal pain.",
        "tests": "A urinary tract infection is diagnosed with a urine dipstick test and a urine culture that "
                 "identifies the bacteria.",
        "treatment": "A urinary tract infection is treated with a short course of antibiotics such as "
                     "nitrofurantoin or trimethoprim, plus plenty of fluids.",
        "specialist": "A urinary tract infection is usually treated in primary care, with a urologist for "
                      "recurrent or complicated infections.",
        "risk_factors": "Risk factors for urinary tract infections include female sex, sexual activity, "
                        "pregnancy, diabetes and urinary catheters.",
    },
]
