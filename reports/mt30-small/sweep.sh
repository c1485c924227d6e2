#!/usr/bin/env bash
# One stream of the MT30 evidence sweep (reports/mt30-small-notes.md, "How it is run").
# Run two at once from the sweep's worktree, 45 s apart; a run the other stream holds is
# refused by its lock and skipped, a finished one is skipped as done, an interrupted one resumes.
#
#   cd /work/sweep-052a
#   for stream in A B; do
#     setsid nohup bash /work/main/reports/mt30-small/sweep.sh >> /work/sweep-$stream.log 2>&1 &
#     sleep 45
#   done
#
# Order: the five methods of issue 20; then M3DT (issue 24), three runs of about 3.5 h each;
# then MTDT as the official code builds it (no task input), the likely source of the paper's
# MTDT row (session 30 of the notes), which completes issue 20's evidence. M3DT's long runs go
# before MTDT's shorter ones so that the two streams end near together (session 33 of the
# notes); a stream already in the MTDT group when this order changed keeps to its own.
# Everything is inside main(): bash reads a script as it runs, so an edit made while streams
# run would otherwise be read from a stale offset.
set -u

main() {
  # The streams train with the worktree's code into its runs: refuse any other directory.
  if [[ ! -e data/replay-ep200 || ! -e reports/mt30-small/runs ]]; then
    echo "sweep.sh: run it from the sweep's worktree (e.g. /work/sweep-052a), not $PWD" >&2
    return 2
  fi
  local python=${MTBENCH_PYTHON:-/work/main/.venv/bin/python}
  local common=(seed=0,1,2 tasks=mt30 scale=small progress=false run.root=reports/mt30-small/runs)
  export PYTHONPATH=$PWD
  # No `set -e`: a group whose runs all fail (or are held by the other stream) must not stop
  # the groups after it.
  local methods
  for methods in \
      "method=harmodt_f,prompt_dt,mtdt,harmodt_r,mtbc" \
      "method=m3dt" \
      "method=mtdt method.conditioning=none"; do
    # shellcheck disable=SC2086  # $methods holds one or two overrides
    "$python" -m bench.cli run -m "${common[@]}" $methods
  done
}

main "$@"
exit
