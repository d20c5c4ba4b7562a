"""The worker environment of the fault tests on the shared 2-core CI box.

With torch's default two OpenMP threads, a worker on a box whose load is 5-9 (other jobs) stalls at
every parallel region's barrier waiting for a descheduled thread: one tiny-model synthesis measured
9-16 s with two threads against 1.2 s with one, at the same moment (load 8). Recovery figures then
measure the box, not the daemon (engine back after SIGKILL: 0.3-7.9 s with two threads, 0.31-0.33 s
with one). The fault tests therefore run their workers with one OpenMP thread; the daemon has no
thread setting of its own yet (reported to the lead: an [engine] cpu_threads key).
"""

from __future__ import annotations

ONE_CPU_THREAD = {"OMP_NUM_THREADS": "1"}  # inherited by the fork server, so by every worker
