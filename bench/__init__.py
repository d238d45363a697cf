"""advkit's benchmarks: each one a module run as ``python -m bench.NAME`` from the repository root.

Every benchmark writes its figures through :func:`bench._common.write_result`, in one envelope (bench, command,
commit, machine, date, results) under ``bench/results/``; ``python -m bench.tables`` turns those files into
``bench/README.md``, the per-file tables next to them and the marked tables in the docs. Figures are never typed.
"""
