#!/usr/bin/env bash
# Builds the three Lambdas, uploads them, and deploys (or updates) the meterflow stack.
# Re-running is safe: unchanged code keeps its key, and an unchanged stack is left alone.
#
#   infra/deploy.sh [--stack NAME] [--region REGION] [--arch arm64|x86_64]
#                   [--param Key=Value ...] [--skip-build] [--dry-run]
#
# --param passes a template parameter (infra/template.yaml lists them), e.g.
#   --param StreamMode=PROVISIONED --param ShardCount=8 --param ApiAuthType=NONE
# --dry-run prints every command (build, AWS) instead of running it: no AWS call, no
# credentials needed. The zips are read from target/lambda (METERFLOW_LAMBDA_DIR to change).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
dist=${METERFLOW_LAMBDA_DIR:-$root/target/lambda}
stack=meterflow
region=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
arch=arm64
dry_run=false
skip_build=false
params=()

usage() {
    # The comment at the top of this file.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

die() {
    echo "deploy: $*" >&2
    exit 1
}

while (($#)); do
    case $1 in
        --stack) stack=${2:?--stack needs a name}; shift 2 ;;
        --region) region=${2:?--region needs a region}; shift 2 ;;
        --arch) arch=${2:?--arch needs arm64 or x86_64}; shift 2 ;;
        --param) params+=("${2:?--param needs Key=Value}"); shift 2 ;;
        --skip-build) skip_build=true; shift ;;
        --dry-run) dry_run=true; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

case $arch in
    arm64) build_target=--arm64 ;;
    x86_64) build_target=--x86-64 ;;
    *) die "--arch must be arm64 or x86_64, not $arch" ;;
esac
[[ $stack =~ ^[a-zA-Z][a-zA-Z0-9-]{0,50}$ ]] ||
    die "--stack must start with a letter and hold only letters, digits and -, up to 51 characters"
for p in "${params[@]}"; do
    [[ $p == ?*=* ]] || die "--param takes Key=Value, not $p"
done

# shellcheck source=infra/common.sh
source "$here/common.sh"

check_prerequisites() {
    local missing=()
    if ! command -v aws >/dev/null 2>&1; then
        missing+=("the AWS CLI v2 (https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html)")
    elif ! aws --version 2>&1 | grep -q '^aws-cli/2\.'; then
        missing+=("the AWS CLI v2 (found $(aws --version 2>&1 | cut -d' ' -f1); v1 lacks the commands used here)")
    fi
    if ! $skip_build && ! cargo lambda --version >/dev/null 2>&1; then
        missing+=("cargo lambda (pip install cargo-lambda, or https://www.cargo-lambda.info/guide/installation.html)")
    fi
    if ((${#missing[@]})); then
        local m
        for m in "${missing[@]}"; do
            echo "deploy: needs $m" >&2
        done
        $dry_run || exit 1
        echo "deploy: (dry run: printing the commands anyway)" >&2
    fi
}

check_prerequisites
resolve_region
account=$(capture "<account-id>" aws sts get-caller-identity --query Account --output text)
artifacts=$(artifact_bucket "$stack" "$account" "$region")
uploads=$(echo "$stack-uploads-$account-$region" | tr '[:upper:]' '[:lower:]')

# Buckets for meters at least the shards (idle shards otherwise), 64 at the least.
buckets=64
user_buckets=""
auth=AWS_IAM
for p in "${params[@]}"; do
    case $p in
        ShardCount=*) ((${p#*=} > buckets)) && buckets=${p#*=} ;;
        PartitionBuckets=*) user_buckets=${p#*=} ;;
        UploadBucketName=*) uploads=${p#*=} ;;
        ApiAuthType=*) auth=${p#*=} ;;
    esac
done
buckets=${user_buckets:-$buckets}

echo "== build ($arch)"
if ! $skip_build; then
    run cargo lambda build --release "$build_target" --output-format zip \
        --manifest-path "$root/Cargo.toml" \
        -p meterflow-splitter -p meterflow-aggregator -p meterflow-api \
        --features meterflow-aggregator/keyspaces,meterflow-api/keyspaces
fi

echo "== artifacts: s3://$artifacts"
if $dry_run || ! aws s3api head-bucket --bucket "$artifacts" --region "$region" >/dev/null 2>&1; then
    location=()
    [[ $region == us-east-1 ]] || location=(--create-bucket-configuration "LocationConstraint=$region")
    run aws s3api create-bucket --bucket "$artifacts" --region "$region" "${location[@]}"
    run aws s3api put-public-access-block --bucket "$artifacts" --region "$region" \
        --public-access-block-configuration \
        BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
fi

# A key per content: CloudFormation updates a function only when its key changes.
declare -A keys
for fn in splitter aggregator api; do
    zip="$dist/$fn/bootstrap.zip"
    if $dry_run && [[ ! -f $zip ]]; then
        hash="<sha256-of-bootstrap.zip>"
    else
        [[ -f $zip ]] || die "$zip is missing: build first (drop --skip-build)"
        hash=$(sha256sum "$zip" | cut -c1-16)
    fi
    keys[$fn]="$stack/$fn-$hash.zip"
    run aws s3 cp "$zip" "s3://$artifacts/${keys[$fn]}" --region "$region" --only-show-errors
done

echo "== stack $stack ($region)"
run aws cloudformation deploy --region "$region" --stack-name "$stack" \
    --template-file "$here/template.yaml" --s3-bucket "$artifacts" --s3-prefix "$stack" \
    --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
    --parameter-overrides \
    "ArtifactBucket=$artifacts" \
    "SplitterCodeKey=${keys[splitter]}" \
    "AggregatorCodeKey=${keys[aggregator]}" \
    "ApiCodeKey=${keys[api]}" \
    "Architecture=$arch" \
    "UploadBucketName=$uploads" \
    "PartitionBuckets=$buckets" \
    "${params[@]}"

url=$(stack_output "<api-url>/" ApiUrl)
auth=$(stack_output "$auth" ApiAuthType)
prefix=$(stack_output "incoming/" UploadPrefix)
stream=$(stack_output "<stream>" Stream)
query="meters/EE00027/daily?from=2019-01-01&to=2019-01-31"
echo
if $dry_run; then
    echo "(dry run: nothing was built, uploaded or deployed; with it, stack $stack in $region would answer as below)"
else
    echo "meterflow is deployed as stack $stack in $region."
fi
echo "  upload:  aws s3 cp meter-data.csv s3://$uploads/$prefix"
echo "  API:     $url"
if [[ $auth == NONE ]]; then
    echo "  curl '$url$query'   (public: AuthType NONE)"
else
    # shellcheck disable=SC2016 # printed for the user's shell to expand
    echo '  curl --aws-sigv4 "aws:amz:'"$region"':lambda" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-security-token: $AWS_SESSION_TOKEN" '"'$url$query'"
fi
echo "  replay:  meterflow replay --stream $stream --from-failure FILE   (README: Operating the pipeline)"
