"""Python helpers of the project's scripts (``import_contracts`` is loaded by ``lint-imports``)."""
