"""DOLPHIN's Prefect orchestration layer (bible §16.8–16.9, §17): flows, their deployments and registration.

``prod.flows.paper_trade`` (daily paper replay), ``prod.flows.backtest`` (backtest supervisor),
``prod.flows.mc_forewarner`` (MC envelope every 4 h), ``prod.flows.deploy`` (``python -m prod.flows
register``). See docs/flows.md.
"""
