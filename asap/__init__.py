"""asap-hpo: agentic hyperparameter optimization with the LLM off the critical path.

The subpackages live in top-level folders of the repository (``agent/``, ``tools/``,
``graphs/``, ``prompts/``) and are mapped under this namespace at install time.
"""

__version__ = "0.1.0"
