#!/usr/bin/env bash
# FlexBSO GitOps steps, shared by github-actions.yml and gitlab-ci.yml (and run as-is by
# the project's own test, test/e2e/gitops.test.ts): the CI files only call this script.
#
#   ci.sh validate   check every stack (stacks/*.yaml) offline
#   ci.sh plan       plan every stack against its agents: plans/<stack>.md (markdown),
#                    plans/<stack>.json (saved plan, only when it has changes) and
#                    plans/comment.md (the PR/MR comment); prints changes=true|false
#                    (also to $GITHUB_OUTPUT when set)
#   ci.sh apply      apply every saved plan in plans/; an agent that changed since the
#                    plan was made refuses it (stale generation): plan again. Each
#                    apply's JSON report (flexbso apply --json: outcome, per-DPU status
#                    and generations, each step, the agent's event ids) is written to
#                    plans/applied/<stack>.json; the human output goes to the log
#
# Environment: FLEXBSO (the CLI, default `flexbso`), STACKS (default stacks), PLANS
# (default plans), FLEXBSO_TOKEN + FLEXBSO_ENDPOINT (the agent's token and the one endpoint it is sent to), FLEXBSO_ALLOW_DATA_LOSS=1
# (only where a reviewed plan deletes data on purpose).
set -euo pipefail

FLEXBSO=${FLEXBSO:-flexbso}
STACKS=${STACKS:-stacks}
PLANS=${PLANS:-plans}

# Sets STACK_FILES; no stack at all is an error (a typo in STACKS must not pass as "no changes").
list_stacks() {
  shopt -s nullglob
  STACK_FILES=("$STACKS"/*.yaml)
  if [ ${#STACK_FILES[@]} -eq 0 ]; then
    echo "ci.sh: no stacks in $STACKS/*.yaml" >&2
    exit 1
  fi
}

case "${1:-}" in
  validate)
    list_stacks
    for f in "${STACK_FILES[@]}"; do $FLEXBSO validate "$f"; done
    ;;
  plan)
    list_stacks
    mkdir -p "$PLANS"
    rm -f "$PLANS"/*.json "$PLANS"/*.md
    changes=false
    for f in "${STACK_FILES[@]}"; do
      name=$(basename "$f" .yaml)
      # exit codes like terraform plan -detailed-exitcode: 0 no changes, 2 changes, 1 error
      rc=0
      $FLEXBSO plan "$f" --format markdown --out "$PLANS/$name.json" > "$PLANS/$name.md" || rc=$?
      case $rc in
        0) status="no changes"; rm -f "$PLANS/$name.json" ;;
        2) status="changes"; changes=true ;;
        *) echo "ci.sh: plan of stack $name failed (exit $rc)" >&2; exit 1 ;;
      esac
      { echo "### FlexBSO stack \`$name\`: $status"; echo; cat "$PLANS/$name.md"; echo; } >> "$PLANS/comment.md"
    done
    echo "changes=$changes"
    if [ -n "${GITHUB_OUTPUT:-}" ]; then echo "changes=$changes" >> "$GITHUB_OUTPUT"; fi
    ;;
  apply)
    shopt -s nullglob
    saved=("$PLANS"/*.json)
    if [ ${#saved[@]} -eq 0 ]; then
      echo "ci.sh: no saved plans in $PLANS: nothing to apply"
      exit 0
    fi
    mkdir -p "$PLANS/applied"
    for p in "${saved[@]}"; do
      $FLEXBSO apply "$p" --json > "$PLANS/applied/$(basename "$p")"
    done
    ;;
  *)
    echo "usage: ci.sh validate|plan|apply" >&2
    exit 1
    ;;
esac
