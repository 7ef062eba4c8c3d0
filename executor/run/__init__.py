"""The run: wiring every part into the running bot, its loop, its timed jobs and its ending.

``app`` starts and stops the bot; ``engine_loop`` turns market state into orders;
``scheduler`` triggers the periodic work owned elsewhere; ``shutdown`` handles signals;
``failures`` turns every way a run can fail into one line and an exit code; ``logs`` sets up
the console and file logging; ``health`` measures the process; ``futures_trading`` wires the
perpetual leg when futures trade.
"""
