"""cardsvc benchmarks: the engine against a Redis + Lua baseline and a plain-dict baseline.

Goal: measure issue 2's figures in one run (``python -m bench.run_all``, ``scripts/bench.sh``)
and keep pytest-benchmark suites (``test_bench_*.py``) that prove each measured operation does its
job. Method and modules: ``redis_lua`` (private redis-server, Lua scripts in ``lua/``,
redis-benchmark), ``baselines`` (dict), ``engine_bench`` (the engine through its Python API),
``memory`` (bytes per code in a fresh process), ``run_all`` (the side-by-side and its targets).
Results are recorded in ``RESULTS.md``.
"""
