"""DOLPHIN's Prefect orchestration layer (bible §16.8–16.9, §17): flows, their deployments and registration.

``prod.flows.paper_trade`` (daily paper replay), ``prod.flows.backtest`` (backtest supervisor),
``prod.flows.mc_forewarner`` (every 4 h: the MC assessment, checked against the published one),
``prod.flows.deploy`` (``python -m prod.flows register``). See docs/flows.md.
"""
