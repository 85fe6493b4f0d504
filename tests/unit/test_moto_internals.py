"""moto's internals the local stack relies on are all still where i2v_local.moto_internals expects.

An upgrade that moves one fails here, naming it, instead of somewhere deep in an e2e run.
"""

import json

import pytest

from i2v_local import moto_internals


def test_every_moto_internal_the_stack_uses_is_present():
    gone = moto_internals.missing()
    assert not gone, (
        "the installed moto no longer has these internals used by i2v_local/moto_internals.py "
        f"(moved or renamed by an upgrade?): {', '.join(gone)}. Adapt moto_internals.py or keep moto "
        "within the range pinned in pyproject.toml."
    )


def test_a_moved_internal_is_reported_by_module_and_attribute(monkeypatch):
    monkeypatch.setattr(
        moto_internals,
        "REQUIRED",
        [
            *moto_internals.REQUIRED,
            ("moto.awslambda.models", "LambdaFunction.invoke_moved"),
            ("moto.no_such_module", "thing"),
        ],
    )
    assert moto_internals.missing() == [
        "moto.awslambda.models:LambdaFunction.invoke_moved",
        "moto.no_such_module:thing",
    ]


def test_nothing_else_imports_moto_internals():
    """Only moto_internals.py touches moto beyond its public server and mock_aws."""
    from pathlib import Path

    root = Path(moto_internals.__file__).resolve().parents[2]
    offenders = []
    for folder in ("local", "layers", "functions", "benchmarks"):
        for path in (root / folder).rglob("*.py"):
            if path.name == "moto_internals.py":
                continue
            for line in path.read_text().splitlines():
                text = line.strip()
                if (text.startswith("from moto") or text.startswith("import moto")) and text not in (
                    "from moto.server import ThreadedMotoServer",
                    "from moto import mock_aws",
                ):
                    offenders.append(f"{path.relative_to(root)}: {text}")
    assert not offenders, offenders


@pytest.mark.parametrize("module, attribute", moto_internals.REQUIRED)
def test_each_required_internal_resolves(module, attribute):
    assert moto_internals._resolve(module, attribute) is not None


def _slots_table():
    """A DynamoDB client (inside mock_aws) and its table "slots", keyed by pk."""
    import boto3

    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    dynamodb.create_table(
        TableName="slots",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return dynamodb


def test_dynamodb_item_operations_run_one_at_a_time_as_conditional_writes_do_on_aws():
    """moto checks a condition and stores the item with no lock between: two executions could
    both take one admission slot. Serialised, a write waits while another operation runs."""
    import threading

    from moto import mock_aws

    moto_internals.serialise_dynamodb_item_operations()
    moto_internals.serialise_dynamodb_item_operations()  # idempotent
    with mock_aws():
        dynamodb = _slots_table()
        done = threading.Event()

        def take() -> None:
            dynamodb.put_item(
                TableName="slots", Item={"pk": {"S": "slot#0"}}, ConditionExpression="attribute_not_exists(pk)"
            )
            done.set()

        with moto_internals._dynamodb_lock:  # another operation is between its check and its store
            writer = threading.Thread(target=take)
            writer.start()
            assert not done.wait(0.5)
        assert done.wait(10)
        writer.join()


def test_a_dynamodb_answer_is_built_while_no_write_can_change_its_items(monkeypatch):
    """moto builds a BatchGetItem's answer from the stored item objects after reading them,
    and an UpdateItem changes those in place: unserialised, the read failed with a 500
    ("dictionary changed size during iteration") under a burst. The whole request holds the lock."""
    from moto import mock_aws
    from moto.dynamodb.models.dynamo_type import Item

    moto_internals.serialise_dynamodb_item_operations()
    describe_attrs = Item.describe_attrs
    held = []

    def describe_while_watching(self, *args, **kwargs):
        held.append(moto_internals._dynamodb_lock._is_owned())
        return describe_attrs(self, *args, **kwargs)

    monkeypatch.setattr(Item, "describe_attrs", describe_while_watching)
    with mock_aws():
        dynamodb = _slots_table()
        dynamodb.put_item(TableName="slots", Item={"pk": {"S": "slot#0"}, "at": {"N": "1"}})
        answer = dynamodb.batch_get_item(RequestItems={"slots": {"Keys": [{"pk": {"S": "slot#0"}}]}})
    assert answer["Responses"]["slots"] == [{"pk": {"S": "slot#0"}, "at": {"N": "1"}}]
    assert held and all(held)


def _item_calls() -> list:
    """Every DynamoDB item operation, on items holding every attribute type, as boto3 parses
    the answers (request ids left out); errors as their codes."""
    import boto3
    from botocore.exceptions import ClientError
    from moto import mock_aws

    every_type = {
        "s": {"S": "text é"},
        "n": {"N": "1796181920.524"},
        "b": {"B": b"\x00\xffbytes"},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "2.5"]},
        "bs": {"BS": [b"\x01", b"\x02"]},
        "m": {"M": {"inner": {"L": [{"S": "x"}, {"NULL": True}, {"BOOL": False}, {"B": b"\x03"}]}}},
        "nothing": {"NULL": True},
        "yes": {"BOOL": True},
    }
    answers: list = []
    with mock_aws():
        db = boto3.client("dynamodb", region_name="us-east-1")
        db.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        key = {"pk": {"S": "p"}, "sk": {"N": "1"}}
        calls = [
            lambda: db.put_item(TableName="t", Item={**key, **every_type}, ReturnConsumedCapacity="TOTAL"),
            lambda: db.put_item(TableName="t", Item={**key, "s": {"S": "v2"}}, ReturnValues="ALL_OLD"),
            lambda: db.put_item(TableName="t", Item={**key, **every_type}),
            lambda: db.get_item(TableName="t", Key=key, ConsistentRead=True),
            lambda: db.get_item(TableName="t", Key={"pk": {"S": "absent"}, "sk": {"N": "1"}}),
            lambda: db.get_item(TableName="t", Key=key, ProjectionExpression="m.inner, b"),
            lambda: db.batch_get_item(RequestItems={"t": {"Keys": [key, {"pk": {"S": "q"}, "sk": {"N": "2"}}]}}),
            lambda: db.update_item(
                TableName="t",
                Key=key,
                UpdateExpression="SET n = n + :one REMOVE yes",
                ExpressionAttributeValues={":one": {"N": "1"}},
                ReturnValues="ALL_NEW",
            ),
            lambda: db.update_item(
                TableName="t",
                Key=key,
                UpdateExpression="SET s = :s",
                ConditionExpression="s = :other",
                ExpressionAttributeValues={":s": {"S": "x"}, ":other": {"S": "not it"}},
            ),
            lambda: db.query(
                TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}}
            ),
            lambda: db.scan(TableName="t", Limit=1),
            lambda: db.batch_write_item(RequestItems={"t": [{"PutRequest": {"Item": {**key, "sk": {"N": "2"}}}}]}),
            lambda: db.transact_get_items(TransactItems=[{"Get": {"TableName": "t", "Key": key}}]),
            lambda: db.transact_write_items(
                TransactItems=[{"Update": {"TableName": "t", "Key": key, "UpdateExpression": "REMOVE b"}}]
            ),
            lambda: db.delete_item(TableName="t", Key=key, ReturnValues="ALL_OLD"),
            lambda: db.describe_table(TableName="t")["Table"]["KeySchema"],
        ]
        for call in calls:
            try:
                answer = call()
            except ClientError as exc:
                answer = exc.response["Error"]["Code"]
            if isinstance(answer, dict):
                answer.pop("ResponseMetadata", None)
            answers.append(answer)
    return answers


def test_dynamodb_item_results_written_as_json_are_what_motos_serializer_writes(monkeypatch):
    """moto's serializer spends about 0.5 ms of CPU per item walking the output shape; item
    results are in DynamoDB's wire form already, so json.dumps writes the same answers."""
    from moto.dynamodb.responses import DynamoResult

    motos_own = getattr(DynamoResult.execute_result, "original", DynamoResult.execute_result)
    monkeypatch.setattr(DynamoResult, "execute_result", motos_own)  # put back after the test
    written_by_moto = _item_calls()
    assert "ConditionalCheckFailedException" in written_by_moto
    assert written_by_moto[0]["ConsumedCapacity"]["TableName"] == "t"

    moto_internals.answer_dynamodb_items_as_json()
    moto_internals.answer_dynamodb_items_as_json()  # idempotent
    assert DynamoResult.execute_result.as_json
    assert DynamoResult.execute_result.original is motos_own
    assert _item_calls() == written_by_moto


def test_a_state_machine_definition_is_parsed_once_and_its_components_keyed_before_they_are_shared():
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser, ASLParserException

    moto_internals.cache_state_machine_parses()
    moto_internals.cache_state_machine_parses()  # idempotent
    done = {"Type": "Pass", "End": True}
    task = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "f"},
        "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 3, "BackoffRate": 2}],
        "Next": "Done",
    }
    definition = json.dumps({"StartAt": "Call", "States": {"Call": task, "Done": done}})
    first, first_tree = AmazonStateLanguageParser.parse(definition)
    second, second_tree = AmazonStateLanguageParser.parse(definition)
    assert first_tree is second_tree and first is second  # parsed and preprocessed once
    # Every component already has the key its per-execution state is stored under: executions
    # that share the program never race to set it (the retrier's attempt counter is one).
    components = moto_internals.evaluation_components(first)
    kinds = {type(c).__name__ for c in components}
    assert {"MaxAttemptsDecl", "BackoffRateDecl"} <= kinds
    assert all(c.__dict__.get("_EvalComponent__heap_key") for c in components)
    with pytest.raises(ASLParserException):  # a bad definition still fails, every time
        AmazonStateLanguageParser.parse("{not asl")
    with pytest.raises(ASLParserException):
        AmazonStateLanguageParser.parse("{not asl")


def test_the_servers_service_lookup_lists_moto_once():
    from moto import backends

    moto_internals.cache_moto_module_list()
    listed = backends.list_of_moto_modules()
    assert "dynamodb" in listed and "stepfunctions" in listed
    assert backends.list_of_moto_modules() is listed


def test_moto_lists_a_response_classs_actions_once():
    from moto.core import responses
    from moto.dynamodb.responses import DynamoHandler

    moto_internals.cache_response_method_names()
    moto_internals.cache_response_method_names()  # idempotent
    names = responses.method_names_from_class(DynamoHandler)
    assert {"update_item", "put_item", "get_item"} <= names
    assert responses.method_names_from_class(DynamoHandler) is names


def test_the_interpreter_shares_one_lambda_client_and_parses_each_json_path_once():
    import jsonpath_ng.ext
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.utils import json_path

    moto_internals.share_state_machine_clients()
    moto_internals.share_state_machine_clients()  # idempotent
    client = lambda_eval_utils.boto_client_for("us-east-1", "lambda")
    assert lambda_eval_utils.boto_client_for("us-east-1", "lambda") is client
    assert lambda_eval_utils.boto_client_for("eu-west-1", "lambda") is not client
    assert client.meta.config.max_pool_connections == moto_internals.STATE_MACHINE_CONNECTIONS
    assert jsonpath_ng.ext.parse("$.a.b") is json_path.parse("$.a.b")
    assert json_path.extract_json("$.a.b", {"a": {"b": 7}}) == 7
