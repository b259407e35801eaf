# shellcheck shell=bash
# shellcheck disable=SC2154 # $dry_run, $stack and $region are set by the caller
# What deploy.sh and cleanup.sh share: running or printing commands (--dry-run), and the
# names they agree on. Sourced, with $dry_run, $stack and $region set by the caller.

# The listing of a dry run goes to the script's stdout, even from inside $(...).
exec 3>&1

# An argument as a shell reads it back: bare when it is plain, else in single quotes.
quote() {
    if [[ $1 =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

# Runs a command, or prints it (after "+ ") in a dry run.
run() {
    if $dry_run; then
        printf '+' >&3
        local arg
        for arg in "$@"; do
            printf ' %s' "$(quote "$arg")" >&3
        done
        printf '\n' >&3
    else
        "$@"
    fi
}

# The output of a command whose result the script needs, or, in a dry run, the command
# printed and $1 in its place.
capture() {
    local placeholder=$1
    shift
    if $dry_run; then
        run "$@"
        echo "$placeholder"
    else
        "$@"
    fi
}

# The region from --region, AWS_REGION, or the CLI's configuration.
resolve_region() {
    if [[ -z $region ]] && ! $dry_run; then
        region=$(aws configure get region 2>/dev/null || true)
    fi
    if [[ -z $region ]]; then
        $dry_run && { region="<region>"; return; }
        echo "no region: pass --region, or set AWS_REGION" >&2
        exit 1
    fi
}

# The bucket holding the deployment zips: one per stack, account and region.
artifact_bucket() {
    echo "$1-artifacts-$2-$3" | tr '[:upper:]' '[:lower:]'
}

# One output of the stack ($2), or $1 in a dry run.
stack_output() {
    capture "$1" aws cloudformation describe-stacks --region "$region" --stack-name "$stack" \
        --query "Stacks[0].Outputs[?OutputKey=='$2'].OutputValue" --output text
}
