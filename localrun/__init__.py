"""The local runtime: Bandwidth Meter on a bare machine with embedded defaults (`make run`).

Nothing in this package is deployed to AWS; it plays the parts AWS plays there
(EventBridge schedule, Lambda's stream event-source mapping, DynamoDB, SES) with
real local servers, and adds a development gateway that speaks Kong's metrics.
"""
