"""Mining logic, pure: hashing, targets, jobs, share validation, extranonce allocation.

Time is always passed in as ``now``; nothing here reads a clock, logs or does IO.
"""
