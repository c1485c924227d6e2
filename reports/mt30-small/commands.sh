#!/usr/bin/env bash
# The command behind every cell of the report, one run each, and the commits that made
# it (start, resumes, end). A run makes its data store when it is missing, so the first
# command remakes the data too (store hash de0402baa75f; `bench data info` shows it).
set -euo pipefail

# reports/mt30-small/runs/mt30/near_optimal/harmodt_f/seed0, made at 6731e6a483bb
bench run seed=0 method=harmodt_f tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs
# reports/mt30-small/runs/mt30/near_optimal/harmodt_f/seed1, made at 6731e6a483bb
bench run seed=1 method=harmodt_f tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs
# reports/mt30-small/runs/mt30/near_optimal/harmodt_f/seed2, made at efa76af72066, 052a0fba7dd9
bench run seed=2 method=harmodt_f tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs
# reports/mt30-small/runs/mt30/near_optimal/harmodt_r/seed0, made at 6731e6a483bb
bench run seed=0 method=harmodt_r tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs
# reports/mt30-small/runs/mt30/near_optimal/harmodt_r/seed1, made at efa76af72066
bench run seed=1 method=harmodt_r tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs
# reports/mt30-small/runs/mt30/near_optimal/harmodt_r/seed2, made at 052a0fba7dd9
bench run seed=2 tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs method=harmodt_r
# reports/mt30-small/runs/mt30/near_optimal/m3dt/seed0, made at 052a0fba7dd9
bench run seed=0 tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs method=m3dt
# reports/mt30-small/runs/mt30/near_optimal/m3dt/seed1, made at 052a0fba7dd9
bench run seed=1 tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs method=m3dt
# reports/mt30-small/runs/mt30/near_optimal/m3dt/seed2, made at 052a0fba7dd9
bench run seed=2 tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs method=m3dt
# reports/mt30-small/runs/mt30/near_optimal/mtbc/seed0, made at 6731e6a483bb
bench run seed=0 method=mtbc tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs
# reports/mt30-small/runs/mt30/near_optimal/mtbc/seed1, made at efa76af72066
bench run seed=1 method=mtbc tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs
# reports/mt30-small/runs/mt30/near_optimal/mtbc/seed2, made at 052a0fba7dd9
bench run seed=2 tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs method=mtbc
# reports/mt30-small/runs/mt30/near_optimal/mtdt/conditioning=none/seed0, made at 052a0fba7dd9
bench run seed=0 tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs method=mtdt method.conditioning=none
# reports/mt30-small/runs/mt30/near_optimal/mtdt/conditioning=none/seed1, made at 052a0fba7dd9
bench run seed=1 tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs method=mtdt method.conditioning=none
# reports/mt30-small/runs/mt30/near_optimal/mtdt/conditioning=none/seed2, made at 052a0fba7dd9
bench run seed=2 tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs method=mtdt method.conditioning=none
# reports/mt30-small/runs/mt30/near_optimal/mtdt/seed0, made at 6731e6a483bb
bench run seed=0 method=mtdt tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs
# reports/mt30-small/runs/mt30/near_optimal/mtdt/seed1, made at 6731e6a483bb, e827e2c3a082, efa76af72066
bench run seed=1 method=mtdt tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs
# reports/mt30-small/runs/mt30/near_optimal/mtdt/seed2, made at 052a0fba7dd9
bench run seed=2 tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs method=mtdt
# reports/mt30-small/runs/mt30/near_optimal/prompt_dt/seed0, made at 6731e6a483bb
bench run seed=0 method=prompt_dt tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs
# reports/mt30-small/runs/mt30/near_optimal/prompt_dt/seed1, made at 6731e6a483bb, e827e2c3a082, efa76af72066
bench run seed=1 method=prompt_dt tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs
# reports/mt30-small/runs/mt30/near_optimal/prompt_dt/seed2, made at efa76af72066, 052a0fba7dd9
bench run seed=2 method=prompt_dt tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs
