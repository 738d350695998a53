"""The prior: a GP on the study's trials that ranks each round's proposals by expected
improvement, the cost model that predicts and prices training time, and speculation's
surrogate. No LLM here.
"""
