"""``python run.py chaos``: exactly-once, proven on this install.

Starts the embedded exchange, runs the real bot against it as a child process (``run.py
--exchange``) while switching the exchange's faults on and off and SIGKILLing and
restarting the bot at random moments, then compares the bot's ledger with the exchange's
ground truth and runs ``audit verify``. ``faults`` is the menu of faults, ``truth`` the
comparison, ``runner`` the schedule and the report.
"""
