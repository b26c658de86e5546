"""Side-by-side benchmarks of the liverelay node against nginx-rtmp (see bench/README.md)."""
