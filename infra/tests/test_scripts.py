"""infra/deploy.sh and infra/cleanup.sh: their dry runs print the commands a deployment needs
and call nothing; run for real against a stand-in `aws` (a script on PATH that records its
arguments and answers as the AWS CLI v2 would), they upload content-addressed zips, deploy with
the right parameters, re-run safely, and delete nothing unless told to.

Run: .venv-moto/bin/python -m unittest discover -s infra/tests (scripts/test does).
"""

import hashlib
import json
import os
import shlex
import subprocess
import tempfile
import textwrap
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "infra" / "deploy.sh"
CLEANUP = ROOT / "infra" / "cleanup.sh"

# The stand-in `aws`: appends its argv (JSON) to $FAKE_AWS_LOG and answers the few calls whose
# output the scripts read. `list-object-versions` returns one page of objects, then none.
FAKE_AWS = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    import json, os, sys
    args = sys.argv[1:]
    with open(os.environ["FAKE_AWS_LOG"], "a") as log:
        log.write(json.dumps(args) + "\\n")
    joined = " ".join(args)
    outputs = {
        "ApiUrl": "https://abc123.lambda-url.eu-west-1.on.aws/",
        "ApiAuthType": os.environ.get("FAKE_AUTH", "AWS_IAM"),
        "UploadPrefix": "incoming/",
        "Stream": "mf-test-FragmentStream-XYZ",
        "UploadBucket": "mf-test-uploads-123456789012-eu-west-1",
    }
    if args == ["--version"]:
        print("aws-cli/2.17.0 Python/3.12.6 Linux/6.1 exe/x86_64")
    elif args[:2] == ["sts", "get-caller-identity"]:
        print("123456789012")
    elif args[:2] == ["cloudformation", "describe-stacks"]:
        key = joined.split("OutputKey=='")[1].split("'")[0]
        print(outputs[key])
    elif args[:2] == ["s3api", "head-bucket"]:
        sys.exit(0 if os.environ.get("FAKE_BUCKET_EXISTS") else 254)
    elif args[:2] == ["s3api", "list-object-versions"]:
        state = os.environ["FAKE_AWS_LOG"] + "." + args[args.index("--bucket") + 1]
        if os.path.exists(state):
            print(json.dumps({"Objects": [], "Quiet": True}))
        else:
            open(state, "w").close()
            print(json.dumps({"Objects": [{"Key": "incoming/a.csv", "VersionId": "v1"}], "Quiet": True}))
    """
)


class Scripts(unittest.TestCase):
    def setUp(self):
        scratch = tempfile.TemporaryDirectory()
        self.addCleanup(scratch.cleanup)
        self.dir = Path(scratch.name)
        bin_dir = self.dir / "bin"
        bin_dir.mkdir()
        fake = bin_dir / "aws"
        fake.write_text(FAKE_AWS)
        fake.chmod(0o755)
        self.log = self.dir / "aws.log"
        self.log.touch()
        # No credentials, no region, no configuration: a dry run needs none of them.
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AWS_") and k != "METERFLOW_LAMBDA_DIR"
        }
        self.env["PATH"] = f"{bin_dir}:{self.env['PATH']}"
        self.env["FAKE_AWS_LOG"] = str(self.log)
        self.env["AWS_CONFIG_FILE"] = str(self.dir / "no-config")
        self.env["AWS_SHARED_CREDENTIALS_FILE"] = str(self.dir / "no-credentials")

    def run_script(self, script, *args, stdin="", env=None, code=0):
        out = subprocess.run(
            [str(script), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=60,
        )
        self.assertEqual(out.returncode, code, f"{script.name} {args}:\n{out.stdout}\n{out.stderr}")
        return out

    def calls(self):
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def printed(self, stdout):
        """The commands a dry run printed, split as the shell would split them."""
        return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]

    def test_a_dry_run_deploy_prints_every_command_and_calls_nothing(self):
        out = self.run_script(DEPLOY, "--dry-run", "--stack", "mf-test", "--region", "eu-west-1")
        self.assertEqual(self.calls(), [["--version"]], "only the version check runs")
        commands = self.printed(out.stdout)
        build = next(c for c in commands if c[:2] == ["cargo", "lambda"])
        self.assertIn("--arm64", build)
        self.assertIn("--release", build)
        for package in ["meterflow-splitter", "meterflow-aggregator", "meterflow-api"]:
            self.assertIn(package, build)
        self.assertIn("meterflow-aggregator/keyspaces,meterflow-api/keyspaces", build)
        uploads = [c for c in commands if c[:3] == ["aws", "s3", "cp"]]
        self.assertEqual(len(uploads), 3)
        for c, fn in zip(uploads, ["splitter", "aggregator", "api"]):
            self.assertTrue(c[3].endswith(f"/{fn}/bootstrap.zip"), c)
            self.assertTrue(c[4].startswith(f"s3://mf-test-artifacts-<account-id>-eu-west-1/mf-test/{fn}-"), c)
        self.assertIn(["aws", "sts", "get-caller-identity", "--query", "Account", "--output", "text"], commands)
        deploy = next(c for c in commands if c[:3] == ["aws", "cloudformation", "deploy"])
        self.assertEqual(deploy[deploy.index("--stack-name") + 1], "mf-test")
        self.assertEqual(deploy[deploy.index("--template-file") + 1], str(ROOT / "infra" / "template.yaml"))
        self.assertIn("CAPABILITY_IAM", deploy)
        self.assertIn("--no-fail-on-empty-changeset", deploy)
        params = dict(p.split("=", 1) for p in deploy[deploy.index("--parameter-overrides") + 1 :])
        self.assertEqual(params["Architecture"], "arm64")
        self.assertEqual(params["PartitionBuckets"], "64")
        self.assertEqual(params["UploadBucketName"], "mf-test-uploads-<account-id>-eu-west-1")
        self.assertEqual(params["ArtifactBucket"], "mf-test-artifacts-<account-id>-eu-west-1")
        self.assertIn("dry run: nothing was built", out.stdout)

    def test_parameters_flow_through_and_buckets_cover_the_shards(self):
        def overrides(*args):
            out = self.run_script(DEPLOY, "--dry-run", "--region", "us-east-1", *args)
            deploy = next(c for c in self.printed(out.stdout) if c[:3] == ["aws", "cloudformation", "deploy"])
            return dict(p.split("=", 1) for p in deploy[deploy.index("--parameter-overrides") + 1 :]), out

        params, out = overrides("--param", "StreamMode=PROVISIONED", "--param", "ShardCount=100")
        self.assertEqual((params["ShardCount"], params["PartitionBuckets"]), ("100", "100"))
        params, _ = overrides("--param", "ShardCount=8")
        self.assertEqual(params["PartitionBuckets"], "64")
        params, _ = overrides("--param", "ShardCount=8", "--param", "PartitionBuckets=16")
        self.assertEqual(params["PartitionBuckets"], "16")
        params, out = overrides("--arch", "x86_64", "--param", "ApiAuthType=NONE")
        self.assertEqual(params["Architecture"], "x86_64")
        build = next(c for c in self.printed(out.stdout) if c[:2] == ["cargo", "lambda"])
        self.assertIn("--x86-64", build)
        self.assertIn("(public: AuthType NONE)", out.stdout)
        # us-east-1 takes no location constraint.
        create = next(c for c in self.printed(out.stdout) if c[:3] == ["aws", "s3api", "create-bucket"])
        self.assertNotIn("--create-bucket-configuration", create)
        bad = self.run_script(DEPLOY, "--dry-run", "--region", "x", "--arch", "sparc", code=1)
        self.assertIn("--arch must be arm64 or x86_64", bad.stderr)
        bad = self.run_script(DEPLOY, "--dry-run", "--region", "x", "--param", "NoEquals", code=1)
        self.assertIn("--param takes Key=Value", bad.stderr)

    def test_a_real_run_uploads_by_content_and_reruns_safely(self):
        dist = self.dir / "lambda"
        hashes = {}
        for fn in ["splitter", "aggregator", "api"]:
            (dist / fn).mkdir(parents=True)
            body = f"zip of {fn}".encode()
            (dist / fn / "bootstrap.zip").write_bytes(body)
            hashes[fn] = hashlib.sha256(body).hexdigest()[:16]
        env = {"METERFLOW_LAMBDA_DIR": str(dist), "AWS_REGION": "eu-west-1"}
        out = self.run_script(DEPLOY, "--skip-build", "--stack", "mf-test", env=env)
        calls = self.calls()
        self.assertIn(["s3api", "create-bucket", "--bucket", "mf-test-artifacts-123456789012-eu-west-1",
                       "--region", "eu-west-1", "--create-bucket-configuration", "LocationConstraint=eu-west-1"], calls)
        for fn, h in hashes.items():
            self.assertIn(["s3", "cp", str(dist / fn / "bootstrap.zip"),
                           f"s3://mf-test-artifacts-123456789012-eu-west-1/mf-test/{fn}-{h}.zip",
                           "--region", "eu-west-1", "--only-show-errors"], calls)
        deploy = next(c for c in calls if c[:2] == ["cloudformation", "deploy"])
        params = dict(p.split("=", 1) for p in deploy[deploy.index("--parameter-overrides") + 1 :])
        self.assertEqual(params["SplitterCodeKey"], f"mf-test/splitter-{hashes['splitter']}.zip")
        self.assertEqual(params["UploadBucketName"], "mf-test-uploads-123456789012-eu-west-1")
        self.assertIn("https://abc123.lambda-url.eu-west-1.on.aws/meters/EE00027/daily", out.stdout)
        self.assertIn('--aws-sigv4 "aws:amz:eu-west-1:lambda"', out.stdout)
        self.assertNotIn("+ ", out.stdout, "nothing is printed as a dry run")

        # Again, the artifacts bucket now there: not created twice; the same keys.
        self.log.write_text("")
        self.run_script(DEPLOY, "--skip-build", "--stack", "mf-test", env={**env, "FAKE_BUCKET_EXISTS": "1"})
        calls = self.calls()
        self.assertFalse([c for c in calls if c[:2] == ["s3api", "create-bucket"]])
        self.assertTrue([c for c in calls if c[:2] == ["cloudformation", "deploy"]])

        missing = self.run_script(DEPLOY, "--skip-build", env={**env, "METERFLOW_LAMBDA_DIR": str(self.dir / "none")}, code=1)
        self.assertIn("build first", missing.stderr)

    def test_cleanup_deletes_only_when_confirmed(self):
        args = ["--stack", "mf-test", "--region", "eu-west-1"]
        out = self.run_script(CLEANUP, *args, stdin="no\n", code=1)
        self.assertIn("nothing deleted", out.stderr)
        self.assertIn("s3://mf-test-uploads-123456789012-eu-west-1", out.stderr)
        self.assertIn("day_fragments", out.stderr)
        destructive = {"delete-objects", "delete-stack", "delete-bucket"}
        self.assertFalse([c for c in self.calls() if destructive & set(c)])

        self.run_script(CLEANUP, *args, stdin="mf-test\n", env={"FAKE_BUCKET_EXISTS": "1"})
        calls = self.calls()
        deleted = [c for c in calls if c[:2] == ["s3api", "delete-objects"]]
        self.assertEqual([c[c.index("--bucket") + 1] for c in deleted],
                         ["mf-test-uploads-123456789012-eu-west-1", "mf-test-artifacts-123456789012-eu-west-1"])
        self.assertEqual(json.loads(deleted[0][deleted[0].index("--delete") + 1])["Objects"],
                         [{"Key": "incoming/a.csv", "VersionId": "v1"}])
        order = [c[1] for c in calls if c[0] in ("s3api", "cloudformation") and c[1].startswith(("delete", "wait"))]
        self.assertEqual(order, ["delete-objects", "delete-stack", "wait", "delete-objects", "delete-bucket"])

    def test_cleanup_yes_skips_the_question_and_dry_run_calls_nothing(self):
        out = self.run_script(CLEANUP, "--dry-run", "--stack", "mf-test", "--region", "eu-west-1")
        self.assertEqual(self.calls(), [])
        commands = self.printed(out.stdout)
        self.assertIn(["aws", "cloudformation", "delete-stack", "--region", "eu-west-1", "--stack-name", "mf-test"], commands)
        self.assertIn(["aws", "cloudformation", "wait", "stack-delete-complete", "--region", "eu-west-1", "--stack-name", "mf-test"], commands)
        self.assertIn("dry run, nothing was deleted", out.stdout)
        self.run_script(CLEANUP, "--yes", "--stack", "mf-test", "--region", "eu-west-1")
        self.assertTrue([c for c in self.calls() if c[:2] == ["cloudformation", "delete-stack"]])


if __name__ == "__main__":
    unittest.main()
