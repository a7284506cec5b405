"""Benchmarks of ``multiprocess`` against the stdlib and the upstream release, side by side.

Run from the repository root::

    python -m tools.bench                      # every section (~25 min here on 2 cores)
    python -m tools.bench --quick              # fewer samples (under 2 min here)
    python -m tools.bench --only serialize --only start --json out.json
    python -m tools.bench --only sync,pool,managers   # issues 4-6
    python -m tools.bench --no-upstream        # no network, no upstream venv

Three implementations are compared in one run: ``ours`` (this repository,
installed editable in the running interpreter), ``stdlib``
(``multiprocessing``) and ``upstream`` (``multiprocess==0.70.19`` in a venv
of its own, see ``upstream.py``); loky, in a venv of its own too
(``loky_venv.py``), joins the ``futures`` and ``zerocopy`` sections.  Each measurement runs in a fresh worker
process per implementation (``runner.py``, ``worker.py``, ``impls.py``);
sections (``sections/``) turn the samples into tables of medians, ratios
against the stdlib and the issues' targets (``report.py``).
"""
