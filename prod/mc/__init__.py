"""MC-forewarner of the configuration envelope (bible §12, §16.8, §28.6): train, load and assess the model.

``prod.mc.train`` runs the Monte Carlo over the champion's parameters (each sample backtested),
``prod.mc.model`` fits and stores the model, ``prod.mc.assess`` turns it (or its absence) into the
``mc_forewarner_latest`` payload. ``python -m prod.mc train|assess`` is the command line.
"""
