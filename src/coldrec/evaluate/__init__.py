"""The benchmark protocol of ../shared/BENCHMARK.md: splits, metrics, baselines' runs, reports."""
