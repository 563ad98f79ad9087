"""The scaling study (``zoo study``): does compound scaling pay off for this dense family, and
with which alpha, beta, gamma?

``plans`` (what to train, pure Python) -> ``trials`` (one job: shape, seed, budget -> a JSON
record) -> ``runner`` (process pool or Ray, resume) -> ``report`` (mean, spread, ties, Markdown,
PNG). ``studies`` ties them together for the CLI. Nothing here imports torch until a trial runs.
"""
