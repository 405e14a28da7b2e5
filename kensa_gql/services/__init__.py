"""Use cases: ``async def verb_noun(...)``, each one transaction, returning domain objects."""
