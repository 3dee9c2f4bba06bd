from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Envelope(_message.Message):
    __slots__ = ("version", "id", "source", "target", "rsvp", "request", "response", "send_error", "control", "blob_mime", "blob_fd", "blob_size")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    RSVP_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    SEND_ERROR_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    BLOB_MIME_FIELD_NUMBER: _ClassVar[int]
    BLOB_FD_FIELD_NUMBER: _ClassVar[int]
    BLOB_SIZE_FIELD_NUMBER: _ClassVar[int]
    version: int
    id: int
    source: str
    target: str
    rsvp: str
    request: Request
    response: Response
    send_error: SendError
    control: Control
    blob_mime: str
    blob_fd: bool
    blob_size: int
    def __init__(self, version: _Optional[int] = ..., id: _Optional[int] = ..., source: _Optional[str] = ..., target: _Optional[str] = ..., rsvp: _Optional[str] = ..., request: _Optional[_Union[Request, _Mapping]] = ..., response: _Optional[_Union[Response, _Mapping]] = ..., send_error: _Optional[_Union[SendError, _Mapping]] = ..., control: _Optional[_Union[Control, _Mapping]] = ..., blob_mime: _Optional[str] = ..., blob_fd: _Optional[bool] = ..., blob_size: _Optional[int] = ...) -> None: ...

class Request(_message.Message):
    __slots__ = ("expects_response", "deadline_ms", "body", "metadata", "report_undelivered")
    EXPECTS_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REPORT_UNDELIVERED_FIELD_NUMBER: _ClassVar[int]
    expects_response: bool
    deadline_ms: int
    body: bytes
    metadata: str
    report_undelivered: bool
    def __init__(self, expects_response: _Optional[bool] = ..., deadline_ms: _Optional[int] = ..., body: _Optional[bytes] = ..., metadata: _Optional[str] = ..., report_undelivered: _Optional[bool] = ...) -> None: ...

class Response(_message.Message):
    __slots__ = ("body", "metadata")
    BODY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    metadata: str
    def __init__(self, body: _Optional[bytes] = ..., metadata: _Optional[str] = ...) -> None: ...

class SendError(_message.Message):
    __slots__ = ("kind", "target", "detail", "delivered")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[SendError.Kind]
        Offline: _ClassVar[SendError.Kind]
        Timeout: _ClassVar[SendError.Kind]
        NoCapability: _ClassVar[SendError.Kind]
    KIND_UNSPECIFIED: SendError.Kind
    Offline: SendError.Kind
    Timeout: SendError.Kind
    NoCapability: SendError.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    kind: SendError.Kind
    target: str
    detail: str
    delivered: bool
    def __init__(self, kind: _Optional[_Union[SendError.Kind, str]] = ..., target: _Optional[str] = ..., detail: _Optional[str] = ..., delivered: _Optional[bool] = ...) -> None: ...

class Control(_message.Message):
    __slots__ = ("register", "registered", "error", "registry_query", "registry", "unregister", "watch", "process_exited", "superseded")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_QUERY_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    UNREGISTER_FIELD_NUMBER: _ClassVar[int]
    WATCH_FIELD_NUMBER: _ClassVar[int]
    PROCESS_EXITED_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_FIELD_NUMBER: _ClassVar[int]
    register: Register
    registered: Registered
    error: KernelError
    registry_query: RegistryQuery
    registry: Registry
    unregister: Unregister
    watch: Watch
    process_exited: ProcessExited
    superseded: Superseded
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., registered: _Optional[_Union[Registered, _Mapping]] = ..., error: _Optional[_Union[KernelError, _Mapping]] = ..., registry_query: _Optional[_Union[RegistryQuery, _Mapping]] = ..., registry: _Optional[_Union[Registry, _Mapping]] = ..., unregister: _Optional[_Union[Unregister, _Mapping]] = ..., watch: _Optional[_Union[Watch, _Mapping]] = ..., process_exited: _Optional[_Union[ProcessExited, _Mapping]] = ..., superseded: _Optional[_Union[Superseded, _Mapping]] = ...) -> None: ...

class Superseded(_message.Message):
    __slots__ = ("process_id",)
    PROCESS_ID_FIELD_NUMBER: _ClassVar[int]
    process_id: str
    def __init__(self, process_id: _Optional[str] = ...) -> None: ...

class Watch(_message.Message):
    __slots__ = ("process_id",)
    PROCESS_ID_FIELD_NUMBER: _ClassVar[int]
    process_id: str
    def __init__(self, process_id: _Optional[str] = ...) -> None: ...

class ProcessExited(_message.Message):
    __slots__ = ("process_id",)
    PROCESS_ID_FIELD_NUMBER: _ClassVar[int]
    process_id: str
    def __init__(self, process_id: _Optional[str] = ...) -> None: ...

class Unregister(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Register(_message.Message):
    __slots__ = ("process_id", "os_pid", "service_token", "takeover", "member_of")
    PROCESS_ID_FIELD_NUMBER: _ClassVar[int]
    OS_PID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TAKEOVER_FIELD_NUMBER: _ClassVar[int]
    MEMBER_OF_FIELD_NUMBER: _ClassVar[int]
    process_id: str
    os_pid: int
    service_token: str
    takeover: bool
    member_of: int
    def __init__(self, process_id: _Optional[str] = ..., os_pid: _Optional[int] = ..., service_token: _Optional[str] = ..., takeover: _Optional[bool] = ..., member_of: _Optional[int] = ...) -> None: ...

class Registered(_message.Message):
    __slots__ = ("process_id", "node", "kernel_boot_id", "kernel_time_ms", "took_over")
    PROCESS_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    KERNEL_BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    KERNEL_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    TOOK_OVER_FIELD_NUMBER: _ClassVar[int]
    process_id: str
    node: str
    kernel_boot_id: str
    kernel_time_ms: int
    took_over: bool
    def __init__(self, process_id: _Optional[str] = ..., node: _Optional[str] = ..., kernel_boot_id: _Optional[str] = ..., kernel_time_ms: _Optional[int] = ..., took_over: _Optional[bool] = ...) -> None: ...

class KernelError(_message.Message):
    __slots__ = ("code", "id", "detail")
    class Code(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CODE_UNSPECIFIED: _ClassVar[KernelError.Code]
        Malformed: _ClassVar[KernelError.Code]
        VersionMismatch: _ClassVar[KernelError.Code]
        NotRegistered: _ClassVar[KernelError.Code]
        InvalidProcessId: _ClassVar[KernelError.Code]
        AlreadyRegistered: _ClassVar[KernelError.Code]
        ReservedProcessId: _ClassVar[KernelError.Code]
        NotGranted: _ClassVar[KernelError.Code]
    CODE_UNSPECIFIED: KernelError.Code
    Malformed: KernelError.Code
    VersionMismatch: KernelError.Code
    NotRegistered: KernelError.Code
    InvalidProcessId: KernelError.Code
    AlreadyRegistered: KernelError.Code
    ReservedProcessId: KernelError.Code
    NotGranted: KernelError.Code
    CODE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    code: KernelError.Code
    id: int
    detail: str
    def __init__(self, code: _Optional[_Union[KernelError.Code, str]] = ..., id: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...

class RegistryQuery(_message.Message):
    __slots__ = ("process_id", "metrics")
    PROCESS_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    process_id: str
    metrics: bool
    def __init__(self, process_id: _Optional[str] = ..., metrics: _Optional[bool] = ...) -> None: ...

class Registry(_message.Message):
    __slots__ = ("entries", "node", "kernel_boot_id", "routed", "malformed", "refused", "timeouts", "offline", "metrics", "kernel_pid")
    class Entry(_message.Message):
        __slots__ = ("process_id", "os_pid", "registered_at", "address", "connected_at", "last_heartbeat")
        PROCESS_ID_FIELD_NUMBER: _ClassVar[int]
        OS_PID_FIELD_NUMBER: _ClassVar[int]
        REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
        ADDRESS_FIELD_NUMBER: _ClassVar[int]
        CONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
        LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
        process_id: str
        os_pid: int
        registered_at: float
        address: str
        connected_at: float
        last_heartbeat: float
        def __init__(self, process_id: _Optional[str] = ..., os_pid: _Optional[int] = ..., registered_at: _Optional[float] = ..., address: _Optional[str] = ..., connected_at: _Optional[float] = ..., last_heartbeat: _Optional[float] = ...) -> None: ...
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    KERNEL_BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTED_FIELD_NUMBER: _ClassVar[int]
    MALFORMED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    TIMEOUTS_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    KERNEL_PID_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[Registry.Entry]
    node: str
    kernel_boot_id: str
    routed: int
    malformed: int
    refused: int
    timeouts: int
    offline: int
    metrics: bytes
    kernel_pid: int
    def __init__(self, entries: _Optional[_Iterable[_Union[Registry.Entry, _Mapping]]] = ..., node: _Optional[str] = ..., kernel_boot_id: _Optional[str] = ..., routed: _Optional[int] = ..., malformed: _Optional[int] = ..., refused: _Optional[int] = ..., timeouts: _Optional[int] = ..., offline: _Optional[int] = ..., metrics: _Optional[bytes] = ..., kernel_pid: _Optional[int] = ...) -> None: ...
