"""The range of a seed: every seed reaches Python's, NumPy's and torch's generators, and NumPy's legacy seed
(``np.random.seed``) is the narrowest of them (0 .. 2**32 - 1; torch takes 64 bits, Python any integer)."""
SEED_MAX = 2**32 - 1
