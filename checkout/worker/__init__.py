"""Background workers: thin loops around one single-pass function each (callable from tests)."""
