"""mtlbench: reproduce and extend the TAAN and MTAL multi-task-learning tables."""
import os as _os

__version__ = "0.1.0"

# torch's CPU ops run on an OpenMP pool whose idle threads spin at every barrier by default; when another
# process holds a core, a spinning thread burns it while the thread it waits for is descheduled, and a
# 2-thread run becomes several times slower than a 1-thread one. Waiting threads that sleep instead cost
# nothing measurable on an idle machine (benchmarks/bench_threads.py). OpenMP reads this once, when torch
# loads, so it is set here, before any mtlbench module imports torch; a value the user set is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
