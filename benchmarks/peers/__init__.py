"""Small launch files for the older systems the benchmark compares riverbed with.

Each is run by the interpreter of that system's own virtual environment under
``benchmarks/.work``; nothing here is imported by riverbed.
"""
