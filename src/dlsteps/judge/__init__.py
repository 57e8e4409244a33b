"""Judging: a stage's logged curves → a verdict with diagnoses. Pure functions of logged
data (numpy only): nothing here touches a model or the training loop, so ``dlsteps
report`` re-judges an old run from its logbook alone and each rule is tested on
hand-made curves in a millisecond."""
