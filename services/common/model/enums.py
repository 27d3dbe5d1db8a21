"""Go's text forms of the model enums: `*Names()`, `*Types()`, `IsValid*`, `Parse*`, `String()`.

Each Go enum is an iota list whose first (hidden) value means "unknown"; the proto enum mirrors it
with `<ENUM>_UNSPECIFIED = 0`. The text forms are Go's stringer names without the type prefix
(`Docker`, `PythonWasm`, `URLDownload`, `ResultsPublished`). Parsing ignores case and surrounding
space, as Go's parsers do; an unknown name is an error that lists the valid ones.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb


@dataclass(frozen=True)
class GoEnum:
    """One model enum: its Go type name and its values' Go names, in iota order from `first`."""

    go_type: str
    go_names: Sequence[str]
    first: int = 1
    _by_folded_name: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        folded = {name.lower(): self.first + i for i, name in enumerate(self.go_names)}
        object.__setattr__(self, "_by_folded_name", folded)

    def types(self) -> list[int]:
        """Every valid value, in order (Go's `*Types()`)."""
        return list(range(self.first, self.first + len(self.go_names)))

    def names(self) -> list[str]:
        """Every valid value's text form, in order (Go's `*Names()`)."""
        return list(self.go_names)

    def is_valid(self, value: int) -> bool:
        """True for a value inside the enum's range; the unknown value is not valid (Go's `IsValid*`)."""
        return self.first <= value < self.first + len(self.go_names)

    def name(self, value: int) -> str:
        """The text form (Go's `String()`); `Type(n)` for a value outside the enum, as Go's stringer."""
        if self.is_valid(value):
            return self.go_names[value - self.first]
        return f"{self.go_type}({value})"

    def parse(self, text: str, *, field: str = "") -> int:
        """The value named by `text`, ignoring case and surrounding space (Go's `Parse*`)."""
        value = self._by_folded_name.get(str(text).strip().lower())
        if value is None:
            raise InvalidArgumentError(
                f"unknown {self.go_type} {text!r}; valid values: {', '.join(self.go_names)}", field=field
            )
        return value


API_VERSION = GoEnum("APIVersion", ("V1alpha1", "V1beta1"))
ENGINE = GoEnum("Engine", ("Noop", "Docker", "Wasm", "Language", "PythonWasm"))
VERIFIER = GoEnum("Verifier", ("Noop", "Deterministic"))
PUBLISHER = GoEnum("Publisher", ("Noop", "Ipfs", "Filecoin", "Estuary", "Local"))
# Enum values this project adds after the seed's constants (by Go type).
BEYOND_SEED = {"Publisher": ("Local",)}
STORAGE_SOURCE_TYPE = GoEnum(
    "StorageSourceType", ("IPFS", "URLDownload", "FilecoinUnsealed", "Filecoin", "Estuary")
)
JOB_STATE_TYPE = GoEnum(
    "JobStateType", ("Bidding", "Waiting", "Running", "Verifying", "Cancelled", "Error", "Completed")
)
JOB_EVENT_TYPE = GoEnum(
    "JobEventType",
    (
        "InitialSubmission",
        "Created",
        "DealUpdated",
        "Bid",
        "BidAccepted",
        "BidRejected",
        "BidCancelled",
        "Running",
        "ComputeError",
        "ResultsProposed",
        "ResultsAccepted",
        "ResultsRejected",
        "ResultsPublished",
        "Error",
        "InvalidRequest",
    ),
)
JOB_LOCAL_EVENT_TYPE = GoEnum(
    "JobLocalEventType", ("Selected", "Bid", "BidAccepted", "BidRejected", "Verified")
)
# Go gives this one explicit numbers with Local = 0, so it has no hidden unknown value. It has no
# text marshalling in Go: job files carry it as a number; the names serve command-line flags.
JOB_SELECTION_DATA_LOCALITY = GoEnum("JobSelectionDataLocality", ("local", "anywhere"), first=0)

# The Go enum behind each proto enum that Go writes as text, keyed by the proto enum's full name
# (for codecs that walk message descriptors).
BY_PROTO_ENUM: dict[str, GoEnum] = {
    pb.APIVersion.DESCRIPTOR.full_name: API_VERSION,
    pb.Engine.DESCRIPTOR.full_name: ENGINE,
    pb.Verifier.DESCRIPTOR.full_name: VERIFIER,
    pb.Publisher.DESCRIPTOR.full_name: PUBLISHER,
    pb.StorageSourceType.DESCRIPTOR.full_name: STORAGE_SOURCE_TYPE,
    pb.JobStateType.DESCRIPTOR.full_name: JOB_STATE_TYPE,
    pb.JobEventType.DESCRIPTOR.full_name: JOB_EVENT_TYPE,
    pb.JobLocalEventType.DESCRIPTOR.full_name: JOB_LOCAL_EVENT_TYPE,
}


# Go's free functions, by their Go names' meaning.
def engine_names() -> list[str]:
    return ENGINE.names()


def verifier_names() -> list[str]:
    return VERIFIER.names()


def publisher_names() -> list[str]:
    return PUBLISHER.names()


def storage_source_names() -> list[str]:
    return STORAGE_SOURCE_TYPE.names()


def job_state_type_names() -> list[str]:
    return JOB_STATE_TYPE.names()


def is_valid_engine(value: int) -> bool:
    return ENGINE.is_valid(value)


def is_valid_verifier(value: int) -> bool:
    return VERIFIER.is_valid(value)


def is_valid_publisher(value: int) -> bool:
    return PUBLISHER.is_valid(value)


def is_valid_storage_source_type(value: int) -> bool:
    return STORAGE_SOURCE_TYPE.is_valid(value)


def is_valid_job_state(value: int) -> bool:
    return JOB_STATE_TYPE.is_valid(value)
