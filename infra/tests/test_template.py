"""infra/template.yaml deployed into moto's CloudFormation (an in-process moto server on a
loopback port): the stack completes, and the stream, the functions' settings and environment,
the event source mapping's failure handling, the queues, the log groups and the roles' policies
read back as intended.

moto's CloudFormation does not model every resource type the template uses. Those are taken
out of the copy deployed here (with the outputs and DependsOn entries that name them), the test
prints which, and it fails if that list changes, so that a moto that learns a type gets it
deployed. moto also ignores some properties when it creates resources from a template: an S3 bucket's
NotificationConfiguration, a function's Architectures and LoggingConfig. Those are checked in
the template itself (class TemplateItself).
"""

import ast
import io
import json
import logging
import re
import socket
import sys
import unittest
import warnings
import zipfile
from pathlib import Path

import boto3
from cfnlint.decode import decode_str
from moto.cloudformation.parsing import get_model_map
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
REGION = "eu-west-1"
STACK = "mf"

# Resource types of the template that moto (5.x) does not model.
UNMODELLED = {
    "AWS::Cassandra::Keyspace",
    "AWS::Cassandra::Table",
    "AWS::CloudWatch::Alarm",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Lambda::Url",
    "AWS::S3::BucketPolicy",
}

PARAMETERS = {
    "ArtifactBucket": "mf-artifacts",
    "SplitterCodeKey": "mf/splitter-0123.zip",
    "AggregatorCodeKey": "mf/aggregator-4567.zip",
    "ApiCodeKey": "mf/api-89ab.zip",
    "UploadBucketName": "mf-uploads-test",
    "StreamMode": "PROVISIONED",
    "ShardCount": "3",
    "RetentionHours": "48",
    "PartitionBuckets": "64",
    "BatchSize": "250",
    "MaximumRetryAttempts": "4",
}


def load_template():
    template, matches = decode_str(TEMPLATE.read_text())
    assert not matches, matches
    return json.loads(json.dumps(template))


def names_in(value):
    """Every logical name a value refers to (Ref, GetAtt, ${...} in Sub)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref":
                yield v
            elif k == "Fn::GetAtt":
                yield v[0] if isinstance(v, list) else v.split(".")[0]
            elif k == "Fn::Sub":
                text = v[0] if isinstance(v, list) else v
                yield from (m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text))
            yield from names_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from names_in(v)


def moto_template():
    """The template without what moto cannot create, and what was left out."""
    template = load_template()
    modelled = get_model_map()
    skipped = {n: r["Type"] for n, r in template["Resources"].items() if r["Type"] not in modelled}
    for name in skipped:
        del template["Resources"][name]
    for resource in template["Resources"].values():
        deps = resource.get("DependsOn")
        if deps is not None:
            deps = [d for d in ([deps] if isinstance(deps, str) else deps) if d not in skipped]
            if deps:
                resource["DependsOn"] = deps
            else:
                del resource["DependsOn"]
        assert not set(names_in(resource)) & set(skipped), resource
    template["Outputs"] = {
        k: v for k, v in template["Outputs"].items() if not set(names_in(v)) & set(skipped)
    }
    return template, skipped


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DeployedOnMoto(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        port = free_port()
        cls.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        cls.server.start()
        kw = dict(
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        cls.client = lambda _cls, service: boto3.client(service, **kw)
        s3 = cls.client(cls, "s3")
        s3.create_bucket(
            Bucket=PARAMETERS["ArtifactBucket"],
            CreateBucketConfiguration={"LocationConstraint": REGION},
        )
        for key in ["SplitterCodeKey", "AggregatorCodeKey", "ApiCodeKey"]:
            body = io.BytesIO()
            with zipfile.ZipFile(body, "w") as z:
                z.writestr("bootstrap", "#!/bin/sh\n")
            s3.put_object(Bucket=PARAMETERS["ArtifactBucket"], Key=PARAMETERS[key], Body=body.getvalue())
        template, cls.skipped = moto_template()
        print(
            "\nmoto does not model, so not deployed here: "
            + ", ".join(f"{n} ({t})" for n, t in sorted(cls.skipped.items())),
            file=sys.stderr,
        )
        cf = cls.client(cls, "cloudformation")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cf.create_stack(
                StackName=STACK,
                TemplateBody=json.dumps(template),
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in PARAMETERS.items()],
                Capabilities=["CAPABILITY_IAM"],
            )
        cls.stack = cf.describe_stacks(StackName=STACK)["Stacks"][0]
        cls.resources = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cf.list_stack_resources(StackName=STACK)["StackResourceSummaries"]
        }

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def aws(self, service):
        return self.client(service)

    def outputs(self):
        return {o["OutputKey"]: o["OutputValue"] for o in self.stack.get("Outputs", [])}

    def test_the_stack_completes_and_says_what_moto_left_out(self):
        self.assertEqual(self.stack["StackStatus"], "CREATE_COMPLETE", self.stack.get("StackStatusReason"))
        self.assertEqual(set(self.skipped.values()), UNMODELLED)
        outputs = self.outputs()
        self.assertEqual(outputs["UploadBucket"], "mf-uploads-test")
        self.assertEqual(outputs["UploadPrefix"], "incoming/")
        self.assertTrue(outputs["FailedBatchesQueueUrl"].startswith("http"), outputs)

    def test_the_stream_has_the_shards_and_retention_asked_for(self):
        stream = self.outputs()["Stream"]
        summary = self.aws("kinesis").describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        self.assertEqual(summary["OpenShardCount"], 3)
        self.assertEqual(summary["RetentionPeriodHours"], 48)
        self.assertEqual(summary["StreamModeDetails"]["StreamMode"], "PROVISIONED")

    def function(self, name):
        config = self.aws("lambda").get_function_configuration(FunctionName=f"{STACK}-{name}")
        # moto keeps a Number parameter's value as a number; Lambda itself has only strings.
        env = config["Environment"]["Variables"]
        config["Environment"]["Variables"] = {k: str(v) for k, v in env.items()}
        return config

    def test_functions_run_the_zips_with_their_settings(self):
        stream = self.outputs()["Stream"]
        splitter = self.function("splitter")
        self.assertEqual((splitter["Runtime"], splitter["Handler"]), ("provided.al2023", "bootstrap"))
        self.assertEqual((splitter["MemorySize"], splitter["Timeout"]), (1024, 900))
        self.assertEqual(
            splitter["Environment"]["Variables"],
            {
                "METERFLOW_STREAM": stream,
                "METERFLOW_PARTITION_BUCKETS": "64",
                "METERFLOW_REJECTS_PREFIX": "s3://mf-uploads-test/rejects/",
                "METERFLOW_HANDOVER_PREFIX": "s3://mf-uploads-test/handover/",
                "METERFLOW_METRICS_NAMESPACE": "meterflow",
            },
        )
        store = {
            "METERFLOW_CQL_NODES": f"cassandra.{REGION}.amazonaws.com:9142",
            "METERFLOW_CQL_KEYSPACE": "meterflow",
            "METERFLOW_CQL_TLS": "true",
            "METERFLOW_CQL_AUTH": "sigv4",
            "METERFLOW_CQL_DATACENTER": REGION,
        }
        aggregator = self.function("aggregator")["Environment"]["Variables"]
        self.assertEqual(
            aggregator,
            {**store, "METERFLOW_DEAD_LETTER": "s3://mf-uploads-test/dead-letters/", "METERFLOW_METRICS_NAMESPACE": "meterflow"},
        )
        api = self.function("api")["Environment"]["Variables"]
        self.assertEqual(api, {**store, "METERFLOW_MAX_RANGE_DAYS": "366"})
        code = self.aws("lambda").get_function(FunctionName=f"{STACK}-aggregator")["Code"]
        self.assertIn("Location", code)

    def test_the_aggregator_mapping_reports_partial_failures_and_gives_up_to_a_queue(self):
        mappings = self.aws("lambda").list_event_source_mappings(FunctionName=f"{STACK}-aggregator")["EventSourceMappings"]
        self.assertEqual(len(mappings), 1)
        m = mappings[0]
        stream_arn = self.aws("kinesis").describe_stream_summary(StreamName=self.outputs()["Stream"])[
            "StreamDescriptionSummary"
        ]["StreamARN"]
        self.assertEqual(m["EventSourceArn"], stream_arn)
        self.assertEqual(m["FunctionResponseTypes"], ["ReportBatchItemFailures"])
        self.assertTrue(m["BisectBatchOnFunctionError"])
        self.assertEqual(m["MaximumRetryAttempts"], 4)
        self.assertEqual(m["MaximumRecordAgeInSeconds"], 21600)
        self.assertEqual(m["BatchSize"], 250)
        self.assertEqual(m["ParallelizationFactor"], 1)
        self.assertEqual(m["StartingPosition"], "TRIM_HORIZON")
        queue_url = self.outputs()["FailedBatchesQueueUrl"]
        queue_arn = self.aws("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.assertEqual(m["DestinationConfig"]["OnFailure"]["Destination"], queue_arn)

    def test_log_groups_keep_logs_for_the_retention_asked_for(self):
        groups = self.aws("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{STACK}-")["logGroups"]
        self.assertEqual(
            {g["logGroupName"]: g.get("retentionInDays") for g in groups},
            {f"/aws/lambda/{STACK}-{f}": 30 for f in ["splitter", "aggregator", "api"]},
        )

    def policy(self, logical):
        iam = self.aws("iam")
        role = self.resources[logical]
        names = iam.list_role_policies(RoleName=role)["PolicyNames"]
        statements = []
        for name in names:
            doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            if isinstance(doc, str):
                # moto keeps a template's inline policy as the repr of a Python dict.
                doc = ast.literal_eval(doc)
            statements.extend(doc["Statement"])
        return statements

    def test_roles_name_every_resource_they_may_touch(self):
        for role in ["SplitterRole", "AggregatorRole", "ApiRole"]:
            for s in self.policy(role):
                resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
                for r in resources:
                    self.assertNotEqual(r, "*", f"{role} {s['Sid']}")
                    self.assertRegex(r, r"^arn:aws:[a-z0-9]+:", f"{role} {s['Sid']}")
        grants = lambda role: {(a, r) for s in self.policy(role)
                               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
                               for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])}
        splitter = grants("SplitterRole")
        self.assertIn(("s3:GetObject", "arn:aws:s3:::mf-uploads-test/incoming/*"), splitter)
        self.assertIn(("s3:PutObject", "arn:aws:s3:::mf-uploads-test/rejects/*"), splitter)
        self.assertNotIn(("s3:PutObject", "arn:aws:s3:::mf-uploads-test/incoming/*"), splitter, "the splitter never writes uploads")
        self.assertFalse([g for g in splitter if g[0].startswith("cassandra:")], "the splitter never touches the store")
        api = grants("ApiRole")
        self.assertEqual({a for a, _ in api if not a.startswith("logs:")}, {"cassandra:Select"}, "the api only reads")
        aggregator = grants("AggregatorRole")
        table = f"arn:aws:cassandra:{REGION}:123456789012:/keyspace/meterflow/table/day_fragments"
        self.assertIn(("cassandra:Modify", table), aggregator)
        self.assertIn(("sqs:SendMessage", self.queue_arn("FailedBatchesQueueUrl")), aggregator)

    def queue_arn(self, output):
        return self.aws("sqs").get_queue_attributes(QueueUrl=self.outputs()[output], AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

    def test_the_upload_bucket_is_encrypted(self):
        enc = self.aws("s3").get_bucket_encryption(Bucket="mf-uploads-test")
        rule = enc["ServerSideEncryptionConfiguration"]["Rules"][0]
        self.assertEqual(rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"], "AES256")


class TemplateItself(unittest.TestCase):
    """What moto does not apply, checked in the template."""

    def setUp(self):
        self.template = load_template()
        self.resources = self.template["Resources"]

    def test_notifications_cover_uploads_and_notes_only(self):
        configs = self.resources["UploadBucket"]["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]
        rules = []
        for i, c in enumerate(configs):
            if "Fn::If" in c:
                cond, c, absent = c["Fn::If"]
                self.assertEqual(cond, f"Suffix{i + 1}")
                self.assertEqual(absent, {"Ref": "AWS::NoValue"})
            self.assertEqual(c["Event"], "s3:ObjectCreated:*")
            self.assertEqual(c["Function"], {"Fn::GetAtt": ["SplitterFunction", "Arn"]})
            rules.append({r["Name"]: r["Value"] for r in c["Filter"]["S3Key"]["Rules"]})
        # One per suffix slot (four), each under the upload prefix, then the hand-over notes.
        for i, r in enumerate(rules[:4]):
            self.assertEqual(r["prefix"], {"Ref": "UploadPrefix"})
            self.assertEqual(r["suffix"], {"Fn::Select": [i, {"Ref": "UploadSuffixes"}]})
        self.assertEqual(rules[4], {"prefix": "handover/", "suffix": ".handover.json"})
        self.assertEqual(len(rules), 5)
        # Reports and dead letters are written outside both prefixes, so they never trigger it.
        default_prefix = self.template["Parameters"]["UploadPrefix"]["Default"]
        env = self.resources["SplitterFunction"]["Properties"]["Environment"]["Variables"]
        for written in [env["METERFLOW_REJECTS_PREFIX"]["Fn::Sub"],
                        self.resources["AggregatorFunction"]["Properties"]["Environment"]["Variables"]["METERFLOW_DEAD_LETTER"]["Fn::Sub"]]:
            key_prefix = written.split("}/", 1)[1]
            self.assertFalse(key_prefix.startswith(default_prefix), written)
            self.assertFalse(key_prefix.startswith("handover/"), written)
        self.assertEqual(env["METERFLOW_HANDOVER_PREFIX"]["Fn::Sub"], "s3://${UploadBucketName}/handover/")

    def test_the_suffix_conditions_pick_the_slots_that_are_given(self):
        # Condition SuffixN holds when the Nth suffix is non-empty: the list is padded with
        # empty entries first, so that Fn::Select never runs past its end.
        for n in (2, 3, 4):
            cond = self.template["Conditions"][f"Suffix{n}"]
            select = cond["Fn::Not"][0]["Fn::Equals"][0]["Fn::Select"]
            self.assertEqual(select[0], n - 1)
            padded = select[1]["Fn::Split"][1]["Fn::Join"][1]
            self.assertEqual(padded[1], ",,,")

    def test_the_function_url_and_its_public_mode(self):
        url = self.resources["ApiUrl"]["Properties"]
        self.assertEqual(url["AuthType"], {"Ref": "ApiAuthType"})
        self.assertEqual(self.template["Parameters"]["ApiAuthType"]["Default"], "AWS_IAM")
        for name in ["ApiPublicUrlPermission", "ApiPublicInvokePermission"]:
            self.assertEqual(self.resources[name]["Condition"], "PublicApi")
        self.assertEqual(self.resources["ApiPublicInvokePermission"]["Properties"]["InvokedViaFunctionUrl"], True)

    def test_functions_run_on_the_built_architecture_and_log_json(self):
        for fn in ["Splitter", "Aggregator", "Api"]:
            props = self.resources[f"{fn}Function"]["Properties"]
            self.assertEqual(props["Architectures"], [{"Ref": "Architecture"}])
            self.assertEqual(props["LoggingConfig"], {"LogFormat": "JSON", "LogGroup": {"Ref": f"{fn}LogGroup"}})
        self.assertEqual(self.template["Parameters"]["Architecture"]["Default"], "arm64")

    def test_the_splitter_gives_up_to_a_queue_after_bounded_retries(self):
        config = self.resources["SplitterInvokeConfig"]["Properties"]
        self.assertEqual(config["MaximumRetryAttempts"], {"Ref": "SplitterRetryAttempts"})
        self.assertEqual(config["DestinationConfig"]["OnFailure"]["Destination"],
                         {"Fn::GetAtt": ["FailedUploadsQueue", "Arn"]})


if __name__ == "__main__":
    unittest.main()
