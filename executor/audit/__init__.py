"""Post-trade audit from the ledger alone: reports, ledger verification, exports, charts.

``python run.py audit`` (``executor.audit.cli.audit_command``) reads the database
read-only; nothing here talks to the exchange or writes to the ledger.
"""
