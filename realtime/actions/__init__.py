"""Actions: every change of state goes through one of these.

Each action validates its input, asks the policy, writes in one transaction (events included,
numbered in their streams), and only after the commit emits the events. Nothing else writes.
"""
