"""Running a spec's grid of (method, seed) cells as separate jobs: ``mtlbench train SPEC --launcher local|slurm``.

``cells`` (which cells depend on which, and in which waves they run), ``job`` (the picklable job that trains one
cell), ``jobs_file`` (what was submitted, per spec output folder), ``status`` (done / running / failed / missing /
diverged per cell), ``local`` (cells as parallel processes on this machine) and ``slurm`` (job arrays on a Slurm
cluster), and ``grid`` (the command's flow).
The ``launcher:`` section and its flags are ``mtlbench.config.launcher``.
submitit is imported only when jobs are really started (``pip install 'mtlbench[slurm]'``)."""
