"""Preflight: every check that needs no training, run before any stage trains
(``preflight.checks``)."""
