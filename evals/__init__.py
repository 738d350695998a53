"""asap's eval suite: tasks x methods x seeds on one ledger, with metrics, plots and a report.

Installed as ``asap.evals`` (``asap eval`` on the command line); ``bench_*.py`` beside it are
stand-alone benchmark scripts.
"""
