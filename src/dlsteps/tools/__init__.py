"""Commands beside the ladder: ``dlsteps profile`` (``tools.profile``) and ``dlsteps
init`` (``tools.scaffold``)."""
