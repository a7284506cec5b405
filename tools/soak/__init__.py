"""Soak: millions of small operations, then proof that nothing grew or was left behind.

Run from the repository root (not in CI; ``--quick`` is a hundredth of the
work, which ``tests/tools/test_soak.py`` runs to keep the tool working)::

    python -m tools.soak                    # the full soak (about 15 min here on 2 busy cores)
    python -m tools.soak --quick            # a hundredth of it (under a minute)
    python -m tools.soak --only queue,pools --start-method spawn

Workloads (``workloads.py``), each split into rounds of equal size:

===================  ==========================================================
``pool.map``          1,000,000 tiny tasks through ``Pool(2).map``
``pool.imap_unord``   1,000,000 tiny tasks through ``imap_unordered``, one per chunk
``queue``             1,000,000 messages through a ``Queue`` to a child process
``simplequeue``       1,000,000 messages through a ``SimpleQueue`` to a child
``manager.dict``      100,000 operations on a ``SyncManager`` dict proxy
``pools``             10,000 pools (``Pool(2)``) created, closed and joined
===================  ==========================================================

How it measures (``runner.py``, in a child process of its own): two rounds
of each workload run first as a warm-up, then the parent's (the runner's)
open descriptors (``/proc/self/fd``) and threads are read (``probes.py``),
the ten measured rounds run, and they are read again.  Resident memory is
read after every round, once garbage is collected and glibc has returned
its free pages (``malloc_trim``): RSS start is the lowest reading of the
first three rounds, RSS end the lowest of the last three, so that a
reading caught with a round's last buffers alive (about 1 MiB, 5% of a
20 MiB parent) does not pass for growth, while a leak, which raises every
reading, does.  After the
workload's teardown its leftovers are looked for: child processes, this
run's ``/dev/shm`` entries (named under a prefix of the run's own, which its
children inherit) and new files in the run's private temp dir (``TMPDIR``).
When the runner has exited, the driver (``__main__.py``) looks once more:
the temp dir must be empty, no ``/dev/shm`` entry of the run left, no
process of the run's session alive.

Bounds, checked per workload; any broken one makes the exit status 1:
resident memory grows less than 5% (``--rss-bound``) from after the warm-up
to the end, descriptors and threads do not grow (nor stay after the
teardown), and nothing is left behind.
"""

from __future__ import annotations

#: RSS growth (percent, after warm-up to end) that breaks the bound.
RSS_BOUND_PERCENT = 5.0
