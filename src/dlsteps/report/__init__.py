"""Showing a run: the console while it climbs (``report.console``), the re-judged verdicts
of a finished run (``report.views``) and ``report.html`` (``report.html``)."""
