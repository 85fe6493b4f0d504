"""Small builders for the AWS resources unit tests create under moto (call inside mock_aws)."""

import boto3


def create_table(name: str = "jobs", key: str = "job_key") -> str:
    """An on-demand table with a string partition key, as the template declares them."""
    boto3.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def create_queue(name: str) -> tuple[str, str]:
    """(queue URL, queue ARN)."""
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def create_topic_with_queue(topic: str = "outcomes", queue: str = "outcomes") -> tuple[str, str]:
    """An SNS topic with an SQS queue subscribed to it, to read what was published: (topic ARN, queue URL)."""
    topic_arn = boto3.client("sns").create_topic(Name=topic)["TopicArn"]
    queue_url, queue_arn = create_queue(queue)
    boto3.client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return topic_arn, queue_url
