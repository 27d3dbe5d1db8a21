"""Benchmarks and the load-and-faults run (`make bench`, `make chaos`); each module also runs as a script."""
