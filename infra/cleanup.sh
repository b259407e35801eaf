#!/usr/bin/env bash
# Deletes the meterflow stack and everything it holds: the uploads bucket (every object and
# version), the Keyspaces table and its data, the stream, queues, logs and alarms, then the
# artifacts bucket deploy.sh made. Asks first.
#
#   infra/cleanup.sh [--stack NAME] [--region REGION] [--yes] [--dry-run]
#
# --yes skips the question; --dry-run prints every AWS command instead of running it (no AWS
# call, no credentials needed).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
stack=meterflow
region=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
dry_run=false
yes=false

usage() {
    # The comment at the top of this file.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

while (($#)); do
    case $1 in
        --stack) stack=${2:?--stack needs a name}; shift 2 ;;
        --region) region=${2:?--region needs a region}; shift 2 ;;
        --yes) yes=true; shift ;;
        --dry-run) dry_run=true; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; echo "cleanup: unknown argument: $1" >&2; exit 1 ;;
    esac
done

# shellcheck source=infra/common.sh
source "$here/common.sh"

resolve_region
uploads=$(stack_output "<upload-bucket>" UploadBucket)
account=$(capture "<account-id>" aws sts get-caller-identity --query Account --output text)
artifacts=$(artifact_bucket "$stack" "$account" "$region")

if ! $yes && ! $dry_run; then
    cat >&2 <<EOF
This deletes stack $stack in $region and all it holds:
  - s3://$uploads, every object and every version (the uploaded files, rejects reports)
  - the Keyspaces table day_fragments and all its data
  - the stream, the failed-batches and failed-uploads queues, the logs and alarms
  - s3://$artifacts (the deployment zips)
EOF
    read -r -p "Type the stack name ($stack) to go on: " answer || answer=""
    if [[ $answer != "$stack" ]]; then
        echo "cleanup: nothing deleted" >&2
        exit 1
    fi
fi

# Deletes every version and delete marker, a page (up to 1000) at a time.
empty_bucket() {
    local bucket=$1 query page
    # shellcheck disable=SC2016 # a JMESPath literal, not a shell expansion
    query='{Objects: [Versions, DeleteMarkers][][].{Key: Key, VersionId: VersionId}, Quiet: `true`}'
    if $dry_run; then
        run aws s3api list-object-versions --bucket "$bucket" --region "$region" \
            --max-items 1000 --query "$query" --output json
        run aws s3api delete-objects --bucket "$bucket" --region "$region" --delete "<the page above>"
        return
    fi
    while :; do
        page=$(aws s3api list-object-versions --bucket "$bucket" --region "$region" \
            --max-items 1000 --query "$query" --output json)
        [[ $page == *'"Key"'* ]] || break
        aws s3api delete-objects --bucket "$bucket" --region "$region" --delete "$page" >/dev/null
    done
}

echo "== emptying s3://$uploads"
[[ -n $uploads && $uploads != None ]] && empty_bucket "$uploads"
echo "== deleting stack $stack"
run aws cloudformation delete-stack --region "$region" --stack-name "$stack"
run aws cloudformation wait stack-delete-complete --region "$region" --stack-name "$stack"
echo "== deleting s3://$artifacts"
if $dry_run || aws s3api head-bucket --bucket "$artifacts" --region "$region" >/dev/null 2>&1; then
    empty_bucket "$artifacts"
    run aws s3api delete-bucket --bucket "$artifacts" --region "$region"
fi
if $dry_run; then
    echo "cleanup: dry run, nothing was deleted"
else
    echo "cleanup: stack $stack is gone"
fi
