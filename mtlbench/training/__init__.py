"""Training in parts: ``sampler`` (which rows each iteration sees), ``step`` (the objective and the one training
step), ``evaluate`` (scores on a split), ``state`` (the resumable TrainState), ``trainer`` (the loop),
``record`` (the result record of a run), ``run_plan`` (run identities: what is finished, what conflicts) and ``run``
(every run of a spec), ``timing`` (``mtlbench time``). ``env`` is the environment fingerprint stored with every
record."""
