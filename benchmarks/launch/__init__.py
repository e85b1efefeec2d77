"""The launch layer, shared by the matrix and tuning: ``registry`` (launchers by name, one signature),
``requests`` (a job request and its dependency), ``options`` (launch options and report), ``pool`` (the debug
and local launchers), ``slurm`` (job arrays, each job after its own dependency), ``profiles`` (SLURM profiles
-> submitit executors), ``job`` (the callable that trains one matrix run)."""
