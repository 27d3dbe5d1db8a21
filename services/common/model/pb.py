"""The model's protobuf messages and enums under one roof (the upb `_pb2` classes: the fast ones)."""

from bacalhau_grpc.pb.model.v1beta1 import (
    api_version_pb2,
    build_version_pb2,
    command_pb2,
    engine_pb2,
    job_event_pb2,
    job_pb2,
    job_selection_pb2,
    job_state_pb2,
    node_info_pb2,
    publisher_pb2,
    resource_usage_pb2,
    spec_pb2,
    storage_pb2,
    verifier_pb2,
)

# Every module of the model package, for code that walks the whole model (contract tests, codecs).
MODULES = (
    api_version_pb2,
    build_version_pb2,
    command_pb2,
    engine_pb2,
    job_event_pb2,
    job_pb2,
    job_selection_pb2,
    job_state_pb2,
    node_info_pb2,
    publisher_pb2,
    resource_usage_pb2,
    spec_pb2,
    storage_pb2,
    verifier_pb2,
)

APIVersion = api_version_pb2.APIVersion
BuildVersionInfo = build_version_pb2.BuildVersionInfo
DebugInfo = build_version_pb2.DebugInfo
RunCommandResult = command_pb2.RunCommandResult
Engine = engine_pb2.Engine
JobEvent = job_event_pb2.JobEvent
JobEventType = job_event_pb2.JobEventType
JobLocalEvent = job_event_pb2.JobLocalEvent
JobLocalEventType = job_event_pb2.JobLocalEventType
Job = job_pb2.Job
JobShard = job_pb2.JobShard
JobWithInfo = job_pb2.JobWithInfo
JobCreatePayload = job_pb2.JobCreatePayload
JobSelectionDataLocality = job_selection_pb2.JobSelectionDataLocality
JobSelectionPolicy = job_selection_pb2.JobSelectionPolicy
NodeInfo = node_info_pb2.NodeInfo
JobStateType = job_state_pb2.JobStateType
JobState = job_state_pb2.JobState
JobNodeState = job_state_pb2.JobNodeState
JobShardState = job_state_pb2.JobShardState
Publisher = publisher_pb2.Publisher
ResourceUsageConfig = resource_usage_pb2.ResourceUsageConfig
ResourceUsageData = resource_usage_pb2.ResourceUsageData
ResourceUsageProfile = resource_usage_pb2.ResourceUsageProfile
Spec = spec_pb2.Spec
Deal = spec_pb2.Deal
JobExecutionPlan = spec_pb2.JobExecutionPlan
JobShardingConfig = spec_pb2.JobShardingConfig
JobSpecDocker = spec_pb2.JobSpecDocker
JobSpecLanguage = spec_pb2.JobSpecLanguage
JobSpecWasm = spec_pb2.JobSpecWasm
StorageSourceType = storage_pb2.StorageSourceType
StorageSpec = storage_pb2.StorageSpec
PublishedResult = storage_pb2.PublishedResult
VerificationResult = verifier_pb2.VerificationResult
Verifier = verifier_pb2.Verifier
