"""The stream poller plays Lambda's event-source mapping: ordered batches, retries, partial
failures, a bounded number of attempts, new shards. A fake streams client, no sleeping."""
import json


from localrun.streams import StreamPoller


class FakeStreams:
    def __init__(self):
        self.shards = {"s1": []}

    def put(self, shard, seq):
        self.shards.setdefault(shard, []).append({"eventID": f"e{seq}", "eventName": "MODIFY",
                                                  "dynamodb": {"SequenceNumber": str(seq), "Keys": {}}})

    def describe_stream(self, StreamArn):
        return {"StreamDescription": {"Shards": [{"ShardId": s} for s in self.shards]}}

    def get_shard_iterator(self, StreamArn, ShardId, ShardIteratorType, SequenceNumber=None):
        records = self.shards[ShardId]
        if ShardIteratorType == "TRIM_HORIZON":
            position = 0
        else:
            position = next((i + 1 for i, r in enumerate(records)
                             if r["dynamodb"]["SequenceNumber"] == SequenceNumber), len(records))
        return {"ShardIterator": json.dumps([ShardId, position])}

    def get_records(self, ShardIterator, Limit):
        shard, position = json.loads(ShardIterator)
        batch = self.shards[shard][position:position + Limit]
        return {"Records": batch, "NextShardIterator": json.dumps([shard, position + len(batch)])}


def seqs(event):
    return [int(r["dynamodb"]["SequenceNumber"]) for r in event["Records"]]


def test_batches_arrive_in_order_and_each_once():
    streams, seen = FakeStreams(), []
    for seq in range(1, 8):
        streams.put("s1", seq)
    poller = StreamPoller(streams, "arn", lambda event, ctx: seen.append(seqs(event)), batch_size=3,
                          sleep=lambda s: None)
    while poller.poll_once():
        pass
    assert seen == [[1, 2, 3], [4, 5, 6], [7]]
    streams.put("s1", 8)
    poller.poll_once()
    assert seen[-1] == [8]


def test_a_failed_invocation_retries_the_whole_batch():
    streams, seen, failures = FakeStreams(), [], [1]
    for seq in (1, 2):
        streams.put("s1", seq)

    def handler(event, ctx):
        seen.append(seqs(event))
        if failures:
            failures.pop()
            raise RuntimeError("transient")

    poller = StreamPoller(streams, "arn", handler, sleep=lambda s: None)
    poller.poll_once()
    assert seen == [[1, 2], [1, 2]] and poller.skipped_batches == 0


def test_batch_item_failures_resume_from_the_lowest_failed_record():
    streams, seen = FakeStreams(), []
    for seq in (1, 2, 3, 4):
        streams.put("s1", seq)

    def handler(event, ctx):
        seen.append(seqs(event))
        if len(seen) == 1:
            return {"batchItemFailures": [{"itemIdentifier": "4"}, {"itemIdentifier": "2"}]}
        return {"batchItemFailures": []}

    StreamPoller(streams, "arn", handler, sleep=lambda s: None).poll_once()
    assert seen == [[1, 2, 3, 4], [2, 3, 4]]


def test_a_poison_batch_is_reported_and_skipped_after_bounded_attempts(tmp_path):
    streams, seen, waits = FakeStreams(), [], []
    for seq in (1, 2):
        streams.put("s1", seq)

    def handler(event, ctx):
        seen.append(seqs(event))
        if 1 in seqs(event):
            raise ValueError("poison")

    poller = StreamPoller(streams, "arn", handler, max_attempts=3, failed_dir=str(tmp_path), sleep=waits.append)
    poller.poll_once()
    assert seen == [[1, 2]] * 3 and poller.skipped_batches == 1
    assert waits == sorted(waits) and len(waits) == 3  # backing off, bounded
    assert json.loads((tmp_path / "1.json").read_text())["Records"][0]["eventSourceARN"] == "arn"
    streams.put("s1", 3)
    poller.poll_once()
    assert seen[-1] == [3]  # the stream goes on after the poison batch


def test_new_shards_are_discovered_and_read_from_their_start():
    streams, seen = FakeStreams(), []
    poller = StreamPoller(streams, "arn", lambda e, c: seen.append(seqs(e)), sleep=lambda s: None)
    poller.poll_once()
    streams.put("s2", 10)
    poller.poll_once()
    assert seen == [[10]]
