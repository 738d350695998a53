"""The ledger: the SQLite file (its schema and version), studies and their trials, timing rows
and events, how trials are stored in rows, and the study's mirror in an Optuna storage.
"""
