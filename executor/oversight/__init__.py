"""What watches and steers a running bot from outside: figures, controls and metrics.

``hub`` builds the oversight of one run (controls, alerts, web server); ``control`` applies
an operator's pause, resume, cancel-all and kill and records them; ``watch`` keeps the live
figures current from the ledger; ``metrics`` exposes them to Prometheus.
"""
