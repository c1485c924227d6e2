#!/usr/bin/env bash
# The command behind every cell of the report, one run each, and the commits that made
# it (start, resumes, end). A run makes its data store when it is missing, so the first
# command remakes the data too (store hash 0acf77a55375; `bench data info` shows it).
set -euo pipefail

# reports/mt5-quick/runs/mt5/near_optimal/harmodt_f/seed0, made at 1665542cd22d (dirty tree)
bench run method=harmodt_f seed=0 tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_f/seed1, made at 1665542cd22d
bench run seed=1 method=harmodt_f tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_f/seed2, made at 1665542cd22d
bench run seed=2 method=harmodt_f tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_f/sparsity=0.1/seed0, made at 57d60bc594e7
bench run method=harmodt_f method.sparsity=0.1 seed=0 tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_f/sparsity=0.1/seed1, made at 57d60bc594e7
bench run method=harmodt_f method.sparsity=0.1 seed=1 tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_f/sparsity=0.1/seed2, made at 57d60bc594e7
bench run method=harmodt_f method.sparsity=0.1 seed=2 tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_f/sparsity=0.3/seed0, made at 57d60bc594e7
bench run method=harmodt_f method.sparsity=0.3 seed=0 tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_f/sparsity=0.3/seed1, made at 57d60bc594e7
bench run method=harmodt_f method.sparsity=0.3 seed=1 tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_f/sparsity=0.3/seed2, made at 57d60bc594e7
bench run method=harmodt_f method.sparsity=0.3 seed=2 tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_m/seed0, made at 1665542cd22d (dirty tree)
bench run method=harmodt_m seed=0 tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_m/seed1, made at 1665542cd22d
bench run seed=1 method=harmodt_m tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_m/seed2, made at 1665542cd22d
bench run seed=2 method=harmodt_m tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_r/seed0, made at 1665542cd22d
bench run seed=0 method=harmodt_r tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_r/seed1, made at 1665542cd22d
bench run seed=1 method=harmodt_r tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/harmodt_r/seed2, made at 1665542cd22d
bench run seed=2 method=harmodt_r tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/mtbc/seed0, made at 1665542cd22d
bench run seed=0 method=mtbc tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/mtbc/seed1, made at 1665542cd22d
bench run seed=1 method=mtbc tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/mtbc/seed2, made at 1665542cd22d
bench run seed=2 method=mtbc tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/mtdt/seed0, made at 1665542cd22d
bench run seed=0 method=mtdt tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/mtdt/seed1, made at 1665542cd22d
bench run seed=1 method=mtdt tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/mtdt/seed2, made at 1665542cd22d
bench run seed=2 method=mtdt tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/mtiql/seed0, made at 1665542cd22d
bench run seed=0 method=mtiql tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/mtiql/seed1, made at 1665542cd22d
bench run seed=1 method=mtiql tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/mtiql/seed2, made at 1665542cd22d
bench run seed=2 method=mtiql tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/prompt_dt/seed0, made at 1665542cd22d
bench run seed=0 method=prompt_dt tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/prompt_dt/seed1, made at 1665542cd22d
bench run seed=1 method=prompt_dt tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
# reports/mt5-quick/runs/mt5/near_optimal/prompt_dt/seed2, made at 1665542cd22d
bench run seed=2 method=prompt_dt tasks=mt5 scale=quick progress=false threads=1 run.root=reports/mt5-quick/runs
