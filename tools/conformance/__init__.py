"""Run CPython's own ``multiprocessing`` tests (and its executor's, ``--suite futures``) against ``multiprocess``.

From the repository root (nice: the suite is heavy)::

    nice -n 10 python -m tools.conformance --baseline-only --json base.json   # the stdlib alone
    nice -n 10 python -m tools.conformance --baseline-json base.json          # ours vs that baseline
    nice -n 10 python -m tools.conformance --baseline                         # both, side by side
    nice -n 10 python -m tools.conformance --only spawn --module processes -k TestQueue --list-failures
    python -m tools.conformance --api-gaps        # multiprocessing.* names the suite uses that ours lacks
    python -m tools.conformance --setup-only      # build the venv and check the hook, here and in a spawned child

    # the process-pool tests of test_concurrent_futures against multiprocess.futures (issue 16)
    nice -n 10 python -m tools.conformance --suite futures --baseline --list-failures
    nice -n 10 python -m tools.conformance --suite futures --python ~/.pyenv/versions/3.13.0/bin/python3.13 \
        --only spawn --module deadlock --baseline

How it works:

* ``venv.py`` builds a throwaway venv (``--system-site-packages``, cached
  under ``~/.cache/mp-conformance``, the distributions' third-party
  requirements installed into it by its own pip -- any interpreter will do,
  ``--python ~/.pyenv/versions/3.X.Y/bin/python``) whose ``.pth`` puts this checkout's
  ``packages/*/src`` on ``sys.path`` and imports the hook of ``hook.py``:
  with ``MP_CONFORMANCE=1`` in the environment, ``multiprocessing`` and every
  ``multiprocessing.X`` resolve to ``multiprocess`` / ``multiprocess.X``, in
  the test process and in every interpreter it starts from the venv (spawned
  and forkserver children, script_helper subprocesses).  Without the
  variable the same venv runs the stdlib: the baseline.
* ``discover.py`` finds the per-start-method test modules in whatever
  layout the interpreter ships (package, single file, or only
  ``_test_multiprocessing.py``, in which case it generates the wrappers), plus
  ``test_multiprocessing_main_handling`` per start method.
* ``runner.py`` runs each (start method, module, implementation) in its own
  process group with ``child.py`` -- a unittest runner writing one JSON line
  per test, with SIGINT raising KeyboardInterrupt even when the run was
  started in the background -- under a per-test watchdog (default 60 s) and
  a per-module limit (default 900 s); a hung test is reported as timed out,
  its process group is killed, and the module resumes after it.
* ``--suite futures`` runs the process-pool tests of CPython's
  ``test_concurrent_futures`` instead (``discover_futures.py``: the
  ``ProcessPool{Fork,Forkserver,Spawn}*`` classes of the single file of
  3.9-3.11 or of the package of 3.12+, as the parts ``process_pool``,
  ``shutdown``, ``wait``, ``as_completed``, ``init``, ``deadlock``).  For
  ours the hook then also gives ``concurrent.futures.ProcessPoolExecutor``
  and ``concurrent.futures.process.ProcessPoolExecutor`` as
  ``multiprocess.futures.ProcessPoolExecutor`` (``MP_CONFORMANCE_FUTURES=1``),
  in every process; ``multiprocessing`` is ``multiprocess`` as above.  The
  baseline is the stdlib's executor on the stdlib's ``multiprocessing``.
  Its allow-list is ``allowlist_futures.toml``: what our executor changes
  on purpose (a dead worker does not break it; lambdas pickle).
* ``results.py`` folds the records into outcomes and compares ours with the
  stdlib test by test; ``report.py`` prints the tables; ``allowlist.toml``
  lists the tests where dill deliberately changes stdlib-pickle behaviour.

A timed-out test's process group gets SIGABRT first (the suite's processes
run with ``-X faulthandler``, so each prints where it was stuck), then
SIGKILL; resource trackers are spared so they can unlink what was leaked.
``--stub multiprocessing.util.NAME=VALUE`` is a diagnostic aid only: it gives
ours a missing attribute so that one gap that breaks the import of a whole
test module can be looked past; such runs are labelled as previews.

Exit status: 1 if any test fails with ours where the stdlib passes (any
failure of ours when there is no baseline), or if any test of ours timed out;
allow-listed failures do not count; 2 if the suite or the hook is unusable.
"""
