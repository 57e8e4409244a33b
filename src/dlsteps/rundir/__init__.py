"""The run directory: its layout (``rundir.layout``), its owner (``rundir.run.RunDir``)
and the atomic writes every rewritten file goes through (``rundir.atomic``)."""
