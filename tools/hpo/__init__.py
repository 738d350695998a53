"""The HPO domain proper: search spaces and their edits, the optimizer interface and its Optuna
and Nevergrad implementations, the panel of tools as a registry, the portfolio that feeds them
the ledger, and pruning.
"""
