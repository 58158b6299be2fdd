"""The rules of the domain, in plain synchronous code with no I/O.

Actions load what a rule needs from the store, ask the rule, then write. Tests call rules directly.
"""
