#!/usr/bin/env bash
# The command behind every cell of the report, one run each.
set -euo pipefail

# reports/mt5-quick/runs/mt5/near_optimal/harmodt_f/seed0
bench run method=harmodt_f seed=0 tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_f/seed1
bench run seed=1 method=harmodt_f tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_f/seed2
bench run seed=2 method=harmodt_f tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_f/sparsity=0.1/seed0
bench run method=harmodt_f method.sparsity=0.1 seed=0 tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_f/sparsity=0.1/seed1
bench run method=harmodt_f method.sparsity=0.1 seed=1 tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_f/sparsity=0.1/seed2
bench run method=harmodt_f method.sparsity=0.1 seed=2 tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_f/sparsity=0.3/seed0
bench run method=harmodt_f method.sparsity=0.3 seed=0 tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_f/sparsity=0.3/seed1
bench run method=harmodt_f method.sparsity=0.3 seed=1 tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_f/sparsity=0.3/seed2
bench run method=harmodt_f method.sparsity=0.3 seed=2 tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_m/seed0
bench run method=harmodt_m seed=0 tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_m/seed1
bench run seed=1 method=harmodt_m tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_m/seed2
bench run seed=2 method=harmodt_m tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_r/seed0
bench run seed=0 method=harmodt_r tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_r/seed1
bench run seed=1 method=harmodt_r tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_r/seed2
bench run seed=2 method=harmodt_r tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/mtbc/seed0
bench run seed=0 method=mtbc tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/mtbc/seed1
bench run seed=1 method=mtbc tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/mtbc/seed2
bench run seed=2 method=mtbc tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/mtdt/seed0
bench run seed=0 method=mtdt tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/mtdt/seed1
bench run seed=1 method=mtdt tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/mtdt/seed2
bench run seed=2 method=mtdt tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/mtiql/seed0
bench run seed=0 method=mtiql tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/mtiql/seed1
bench run seed=1 method=mtiql tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/mtiql/seed2
bench run seed=2 method=mtiql tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/prompt_dt/seed0
bench run seed=0 method=prompt_dt tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/prompt_dt/seed1
bench run seed=1 method=prompt_dt tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/prompt_dt/seed2
bench run seed=2 method=prompt_dt tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
