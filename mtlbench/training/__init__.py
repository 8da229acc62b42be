"""The training loop (trainer.py) and the environment fingerprint stored with every result (env.py)."""
