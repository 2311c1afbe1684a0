"""The suite's helpers, one package: tests/ is on pytest's path, and the benchmark scripts reach it
through the symlink benchmarks/support (spawn and dockercli are theirs too)."""
