"""Benchmarks: the docker runtime against the native runtime on one machine (`make bench`)."""
