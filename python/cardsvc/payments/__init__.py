"""Payments: the provider port and adapters (``providers/``), the attempt state machine
(``state``) and the outbound HTTP transport (``transport``). Pure Python, no SQL."""
