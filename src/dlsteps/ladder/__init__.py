"""The ladder: the stage records (``ladder.stages``), what a run builds from its config
(``ladder.project``), one training stage end to end (``ladder.training``) and the climb
from preflight to the top (``ladder.runner``)."""
