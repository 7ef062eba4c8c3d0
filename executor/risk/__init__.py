"""Pre-send risk: every order is checked here before the order manager may send it.

``checks`` holds the spot checks and the kill switch; ``futures`` the checks for the
perpetual leg (position, leverage, liquidation distance).
"""
