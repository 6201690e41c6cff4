"""The SQL schema's history: Alembic revisions (``versions/``) and the environment that runs them
(``env.py``). ``cardsvc.db.Database.open`` migrates to head at start-up; ``schema.py`` gathers
every package's tables, which is what the revisions must produce (a test compares them).
"""
