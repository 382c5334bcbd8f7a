"""Training, by concern: `state` (what a checkpoint holds), `steps` (the D and G updates and the
EMA of G), `upkeep` (the maintenance block: log, samples, evaluation, checkpoints, rollback) and
`loop` (`train`: the loop that runs them)."""
