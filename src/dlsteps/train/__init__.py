"""Training: the one loop (``engine.fit``), its callbacks, the train steps, optimizers,
checkpoints, resume, DDP and signals. It writes the logbook and never judges."""
