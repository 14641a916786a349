"""The test harness's speed-ups (tests/support/speedups.py) change no answer: moto's Query reads
only the partition yet answers what moto answers from the whole table, a transaction still rolls
back, and every botocore session still finds its models."""
import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.models.table import Table

KEYS = [("A", f"{n:03d}") for n in range(30)] + [("B", f"{n:03d}") for n in range(40)] + [("C", "x")]


@pytest.fixture
def table(isolated):
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                  {"AttributeName": "sk", "AttributeType": "S"}],
                            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                       {"AttributeName": "sk", "KeyType": "RANGE"}])
        for pk, sk in reversed(KEYS):  # stored out of order
            client.put_item(TableName="t", Item={"pk": {"S": pk}, "sk": {"S": sk}, "n": {"N": str(len(sk))}})
        yield client


def pages(client, **query):
    """Every page of a Query: the keys of each."""
    result, start = [], None
    while True:
        page = client.query(TableName="t", **query, **({"ExclusiveStartKey": start} if start else {}))
        result.append([(i["pk"]["S"], i["sk"]["S"]) for i in page["Items"]])
        start = page.get("LastEvaluatedKey")
        if not start:
            return result


QUERIES = [
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "B"}}},
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "B"}}, "Limit": 7},
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "A"}}, "Limit": 4,
     "ScanIndexForward": False},
    {"KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
     "ExpressionAttributeValues": {":p": {"S": "B"}, ":a": {"S": "010"}, ":b": {"S": "019"}}, "Limit": 3},
    {"KeyConditionExpression": "pk = :p AND begins_with(sk, :a)",
     "ExpressionAttributeValues": {":p": {"S": "A"}, ":a": {"S": "02"}}},
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "none"}}},
]


@pytest.mark.parametrize("query", QUERIES)
def test_a_query_answers_what_moto_answers_from_the_whole_table(table, query, monkeypatch):
    narrowed = pages(table, **query)
    assert Table.query.__name__ == "partition_query"  # the harness's, not moto's own
    monkeypatch.setattr(Table, "all_items", _moto_all_items())
    monkeypatch.setattr(Table, "query", _moto_query())
    assert narrowed == pages(table, **query)
    assert sum(map(len, narrowed)) == len([k for k in KEYS if _matches(k, query)])


def test_a_scan_still_reads_the_whole_table(table):
    items = table.scan(TableName="t")["Items"]
    assert sorted((i["pk"]["S"], i["sk"]["S"]) for i in items) == sorted(KEYS)


def test_sessions_share_one_loader_and_each_finds_its_models(isolated):
    first, second = boto3.session.Session(), boto3.session.Session()
    assert first._loader is second._loader
    assert first._loader.search_paths.count(first._loader.search_paths[-1]) == 1  # boto3's path once
    assert second.client("dynamodb", region_name="us-east-1").meta.service_model.service_name == "dynamodb"
    assert second.resource("dynamodb", region_name="us-east-1").meta.service_name == "dynamodb"  # boto3's own data


def _closure_cell(function, name):
    return function.__closure__[function.__code__.co_freevars.index(name)].cell_contents


def _moto_all_items():
    return _closure_cell(Table.all_items, "all_items")


def _moto_query():
    return _closure_cell(Table.query, "query")


def _matches(key, query):
    pk, sk = key
    values = query["ExpressionAttributeValues"]
    if pk != values[":p"]["S"]:
        return False
    condition = query["KeyConditionExpression"]
    if "BETWEEN" in condition:
        return values[":a"]["S"] <= sk <= values[":b"]["S"]
    if "begins_with" in condition:
        return sk.startswith(values[":a"]["S"])
    return True


def test_a_cancelled_transaction_still_changes_nothing_and_a_good_one_applies(table):
    """The backup a transaction is rolled back to is taken once a table, not once an action: a
    transaction whose last action fails must still leave what its first actions wrote undone."""
    def put(sk, condition=None):
        action = {"TableName": "t", "Item": {"pk": {"S": "T"}, "sk": {"S": sk}}}
        return {"Put": {**action, **({"ConditionExpression": condition} if condition else {})}}

    with pytest.raises(table.exceptions.TransactionCanceledException):
        table.transact_write_items(TransactItems=[put("new-1"), put("new-2"), {"Update": {
            "TableName": "t", "Key": {"pk": {"S": "A"}, "sk": {"S": "000"}}, "UpdateExpression": "SET n = :n",
            "ExpressionAttributeValues": {":n": {"N": "9"}}}}, put("x", "attribute_exists(nothing)")])
    assert pages(table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "T"}}) == [[]]
    assert table.get_item(TableName="t", Key={"pk": {"S": "A"}, "sk": {"S": "000"}})["Item"]["n"] == {"N": "3"}
    table.transact_write_items(TransactItems=[put("new-1"), put("new-2")])
    assert pages(table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "T"}}) == [
        [("T", "new-1"), ("T", "new-2")]]
