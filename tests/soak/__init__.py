"""Chaos soak harness (``make soak MINUTES=N``); outside DOLPHIN's services. See :mod:`tests.soak.runner`."""
