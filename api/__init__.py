"""The HTTP layer of cardsvc (FastAPI): it arrives in issue 4.

Until then this package is a placeholder, so the import contracts in ``pyproject.toml`` (the
domain in ``cardsvc`` never imports ``api``) already have both sides to check.
"""
