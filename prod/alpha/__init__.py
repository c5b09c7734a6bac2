"""Pure alpha core of DOLPHIN: NDAlphaEngine (engine.py) and its layers — signal, irp, sizing,
exits, fees, ob, vol, acb, survival — with typed parameters in params.py.  No I/O, no clock, no bus.
See docs/alpha.md for the layers, the parameters and the engine's call sequence."""
