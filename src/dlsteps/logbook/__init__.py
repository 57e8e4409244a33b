"""The logbook: every scalar of a stage, written to sinks (``scalars.jsonl`` and
TensorBoard, or nothing) and read back as curves. It knows rows and files, no training.

``logbook.curves`` (reading) needs neither torch nor TensorBoard; ``logbook.book`` and
``logbook.sinks`` write.
"""
