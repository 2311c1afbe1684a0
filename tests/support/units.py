"""Sizes in bytes, as the settings, the metrics and the cgroup files count them."""

MiB = 1 << 20
