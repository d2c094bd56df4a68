"""Queries: parse what the user typed into terms, embed them, rank the store's vectors."""
