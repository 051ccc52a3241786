"""Silver feature pipeline (reference §4): 18 stages over one trading date, pure pandas/numpy
functions of a :class:`~transforms.silver.day.SilverDay`, each wrapped in a Beam PTransform
(:mod:`transforms.silver.ptransforms`)."""
