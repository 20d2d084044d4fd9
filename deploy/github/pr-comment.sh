#!/usr/bin/env bash
# The comment step of the dsr GitHub Action (action.yml at the repository's root), in a
# script so that a test can run it.
#
#   pr-comment.sh diff   validate the spec, then post `dsr diff BASE HEAD --format markdown`
#   pr-comment.sh plan   post `dsr plan --format markdown` (needs the engine: self-hosted)
#
# Each posts ONE comment per pull request and updates it in place on the next push: it is
# found by a hidden marker (`<!-- dsr-plan -->` for the diff, `<!-- dsr-plan-live -->` for
# the live plan) through `gh api`.
#
# Environment: REPO (owner/name), PR_NUMBER, GH_TOKEN (for gh), BASE_SHA (diff), SPEC_PATH
# (default: specs), DSR (the dsr command; default: dsr), BODY_FILE (where the comment's
# text is kept; default: a temporary file). Exit: dsr's (1 when invalid).
#
# Run from the root of the pull request's checkout. Bind sources that exist only on the
# host are not checked here (validate and diff say so in the comment); the host's
# `dsr plan` / `dsr run` checks them.
set -euo pipefail

mode=${1:?usage: pr-comment.sh diff|plan}
spec=${SPEC_PATH:-specs}
read -ra dsr <<<"${DSR:-dsr}"
: "${REPO:?}" "${PR_NUMBER:?}"

work=$(mktemp -d)
trap 'git worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
body=${BODY_FILE:-$work/body.md}
status=0

# A fence no spec text can close early (a line of ``` in an error would end a ``` fence).
fence() { printf '~~~~~~~~text\n'; sed 's/^~~~~~~~/ ~~~~~~~~/'; printf '~~~~~~~~\n'; }

diff_body() {
    printf '%s\n### dsr: what this pull request changes\n\n' "<!-- dsr-plan -->"
    if ! "${dsr[@]}" validate "$spec" >"$work/validate.txt" 2>&1; then
        printf 'The spec is **invalid**; nothing can be applied:\n\n'
        fence <"$work/validate.txt"
        return 1
    fi
    git worktree add --quiet --detach "$work/base" "${BASE_SHA:?}"
    if [[ ! -e $work/base/$spec ]]; then
        printf 'The base has no `%s` yet: everything in the spec is new.\n\n' "$spec"
        fence <"$work/validate.txt"
        return 0
    fi
    local rc=0
    "${dsr[@]}" diff "$work/base/$spec" "$spec" --format markdown 2>"$work/diff.err" || rc=$?
    if ((rc != 0)); then
        printf 'dsr diff failed:\n\n'
        fence <"$work/diff.err"
        return "$rc"
    fi
    if grep -q '^not checked here: ' "$work/validate.txt"; then
        printf '\nChecked on the host, not here (a pull request runner is not the host):\n\n'
        grep '^not checked here: ' "$work/validate.txt" | sed 's/^not checked here: //' | fence
    fi
}

plan_body() {
    printf '%s\n### dsr: the plan against the live engine\n\n' "<!-- dsr-plan-live -->"
    if ! "${dsr[@]}" plan "$spec" --format markdown >"$work/plan.md" 2>"$work/plan.err"; then
        fence <"$work/plan.err"
        return 1
    fi
    cat "$work/plan.md"
}

# Post or update the one comment carrying MARKER.
upsert() {
    local marker=$1 id
    id=$(gh api "repos/$REPO/issues/$PR_NUMBER/comments" --paginate \
        --jq ".[] | select(.body | contains(\"$marker\")) | .id" | head -n 1)
    if [[ -n $id ]]; then
        gh api --silent -X PATCH "repos/$REPO/issues/comments/$id" -F "body=@$body"
    else
        gh api --silent -X POST "repos/$REPO/issues/$PR_NUMBER/comments" -F "body=@$body"
    fi
}

case $mode in
diff) diff_body >"$body" || status=$?; upsert "<!-- dsr-plan -->" ;;
plan) plan_body >"$body" || status=$?; upsert "<!-- dsr-plan-live -->" ;;
*) echo "pr-comment.sh: unknown mode $mode" >&2; exit 2 ;;
esac
exit "$status"
