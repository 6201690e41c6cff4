"""Payment provider adapters behind one port (``base.py``)."""
