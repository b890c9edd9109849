"""riverbed's benchmark: ``make bench`` (``python -m benchmarks``). Not part of the tests."""
