"""The venue a run trades on: profiles, endpoint URLs, API keys and the live preflight.

Everything that says *where* the bot trades and *whether it may*: ``profiles`` resolves a
profile name to its ``endpoints``; ``keys`` reads credentials from the environment or
``.env``; ``preflight`` checks a key, account, clock and symbol list before real money.
"""
