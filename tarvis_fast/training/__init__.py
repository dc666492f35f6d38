"""Training: point sampling, matching and losses; the optimiser and schedule (`optim`), checkpoints (`checkpoint`,
`run_dir`), where a run's weights start (`init_weights`), the loop (`trainer`), logs (`logs`) and the command line
(`cli`, behind train.py).

Imports model, data and config; never inference.
"""
