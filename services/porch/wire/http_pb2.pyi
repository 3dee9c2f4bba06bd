from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WsMessageType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WS_MESSAGE_TYPE_UNSPECIFIED: _ClassVar[WsMessageType]
    Text: _ClassVar[WsMessageType]
    Binary: _ClassVar[WsMessageType]
    Ping: _ClassVar[WsMessageType]
    Pong: _ClassVar[WsMessageType]
    Close: _ClassVar[WsMessageType]

class MessageType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_TYPE_UNSPECIFIED: _ClassVar[MessageType]
    MESSAGE_TYPE_REQUEST: _ClassVar[MessageType]
    MESSAGE_TYPE_RESPONSE: _ClassVar[MessageType]
WS_MESSAGE_TYPE_UNSPECIFIED: WsMessageType
Text: WsMessageType
Binary: WsMessageType
Ping: WsMessageType
Pong: WsMessageType
Close: WsMessageType
MESSAGE_TYPE_UNSPECIFIED: MessageType
MESSAGE_TYPE_REQUEST: MessageType
MESSAGE_TYPE_RESPONSE: MessageType

class Header(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HttpResponse(_message.Message):
    __slots__ = ("status", "headers")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    status: int
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    def __init__(self, status: _Optional[int] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ...) -> None: ...

class HttpServerAction(_message.Message):
    __slots__ = ("bind", "secure_bind", "unbind", "web_socket_bind", "web_socket_secure_bind", "web_socket_unbind", "web_socket_open", "web_socket_push", "web_socket_ext_push_outgoing", "web_socket_ext_push_data", "web_socket_close", "web_socket_counts")
    class Bind(_message.Message):
        __slots__ = ("path", "authenticated", "local_only", "cache", "timeout_ms", "direct")
        PATH_FIELD_NUMBER: _ClassVar[int]
        AUTHENTICATED_FIELD_NUMBER: _ClassVar[int]
        LOCAL_ONLY_FIELD_NUMBER: _ClassVar[int]
        CACHE_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
        DIRECT_FIELD_NUMBER: _ClassVar[int]
        path: str
        authenticated: bool
        local_only: bool
        cache: bool
        timeout_ms: int
        direct: bool
        def __init__(self, path: _Optional[str] = ..., authenticated: _Optional[bool] = ..., local_only: _Optional[bool] = ..., cache: _Optional[bool] = ..., timeout_ms: _Optional[int] = ..., direct: _Optional[bool] = ...) -> None: ...
    class SecureBind(_message.Message):
        __slots__ = ("path", "cache", "timeout_ms", "direct")
        PATH_FIELD_NUMBER: _ClassVar[int]
        CACHE_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
        DIRECT_FIELD_NUMBER: _ClassVar[int]
        path: str
        cache: bool
        timeout_ms: int
        direct: bool
        def __init__(self, path: _Optional[str] = ..., cache: _Optional[bool] = ..., timeout_ms: _Optional[int] = ..., direct: _Optional[bool] = ...) -> None: ...
    class Unbind(_message.Message):
        __slots__ = ("path",)
        PATH_FIELD_NUMBER: _ClassVar[int]
        path: str
        def __init__(self, path: _Optional[str] = ...) -> None: ...
    class WebSocketBind(_message.Message):
        __slots__ = ("path", "authenticated", "extension", "direct")
        PATH_FIELD_NUMBER: _ClassVar[int]
        AUTHENTICATED_FIELD_NUMBER: _ClassVar[int]
        EXTENSION_FIELD_NUMBER: _ClassVar[int]
        DIRECT_FIELD_NUMBER: _ClassVar[int]
        path: str
        authenticated: bool
        extension: bool
        direct: bool
        def __init__(self, path: _Optional[str] = ..., authenticated: _Optional[bool] = ..., extension: _Optional[bool] = ..., direct: _Optional[bool] = ...) -> None: ...
    class WebSocketSecureBind(_message.Message):
        __slots__ = ("path", "extension", "direct")
        PATH_FIELD_NUMBER: _ClassVar[int]
        EXTENSION_FIELD_NUMBER: _ClassVar[int]
        DIRECT_FIELD_NUMBER: _ClassVar[int]
        path: str
        extension: bool
        direct: bool
        def __init__(self, path: _Optional[str] = ..., extension: _Optional[bool] = ..., direct: _Optional[bool] = ...) -> None: ...
    class WebSocketUnbind(_message.Message):
        __slots__ = ("path",)
        PATH_FIELD_NUMBER: _ClassVar[int]
        path: str
        def __init__(self, path: _Optional[str] = ...) -> None: ...
    class WebSocketOpen(_message.Message):
        __slots__ = ("path", "channel_id")
        PATH_FIELD_NUMBER: _ClassVar[int]
        CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
        path: str
        channel_id: int
        def __init__(self, path: _Optional[str] = ..., channel_id: _Optional[int] = ...) -> None: ...
    class WebSocketPush(_message.Message):
        __slots__ = ("channel_id", "message_type")
        CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
        MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
        channel_id: int
        message_type: WsMessageType
        def __init__(self, channel_id: _Optional[int] = ..., message_type: _Optional[_Union[WsMessageType, str]] = ...) -> None: ...
    class WebSocketExtPushOutgoing(_message.Message):
        __slots__ = ("channel_id", "message_type", "desired_reply_type")
        CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
        MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
        DESIRED_REPLY_TYPE_FIELD_NUMBER: _ClassVar[int]
        channel_id: int
        message_type: WsMessageType
        desired_reply_type: MessageType
        def __init__(self, channel_id: _Optional[int] = ..., message_type: _Optional[_Union[WsMessageType, str]] = ..., desired_reply_type: _Optional[_Union[MessageType, str]] = ...) -> None: ...
    class WebSocketExtPushData(_message.Message):
        __slots__ = ("id", "kinode_message_type", "blob")
        ID_FIELD_NUMBER: _ClassVar[int]
        KINODE_MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
        BLOB_FIELD_NUMBER: _ClassVar[int]
        id: int
        kinode_message_type: MessageType
        blob: bytes
        def __init__(self, id: _Optional[int] = ..., kinode_message_type: _Optional[_Union[MessageType, str]] = ..., blob: _Optional[bytes] = ...) -> None: ...
    class WebSocketClose(_message.Message):
        __slots__ = ("channel_id",)
        CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
        channel_id: int
        def __init__(self, channel_id: _Optional[int] = ...) -> None: ...
    class WebSocketCounts(_message.Message):
        __slots__ = ("channels",)
        class Channel(_message.Message):
            __slots__ = ("channel_id", "messages_in", "messages_out", "bytes_in", "bytes_out", "closed")
            CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
            MESSAGES_IN_FIELD_NUMBER: _ClassVar[int]
            MESSAGES_OUT_FIELD_NUMBER: _ClassVar[int]
            BYTES_IN_FIELD_NUMBER: _ClassVar[int]
            BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
            CLOSED_FIELD_NUMBER: _ClassVar[int]
            channel_id: int
            messages_in: int
            messages_out: int
            bytes_in: int
            bytes_out: int
            closed: str
            def __init__(self, channel_id: _Optional[int] = ..., messages_in: _Optional[int] = ..., messages_out: _Optional[int] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ..., closed: _Optional[str] = ...) -> None: ...
        CHANNELS_FIELD_NUMBER: _ClassVar[int]
        channels: _containers.RepeatedCompositeFieldContainer[HttpServerAction.WebSocketCounts.Channel]
        def __init__(self, channels: _Optional[_Iterable[_Union[HttpServerAction.WebSocketCounts.Channel, _Mapping]]] = ...) -> None: ...
    BIND_FIELD_NUMBER: _ClassVar[int]
    SECURE_BIND_FIELD_NUMBER: _ClassVar[int]
    UNBIND_FIELD_NUMBER: _ClassVar[int]
    WEB_SOCKET_BIND_FIELD_NUMBER: _ClassVar[int]
    WEB_SOCKET_SECURE_BIND_FIELD_NUMBER: _ClassVar[int]
    WEB_SOCKET_UNBIND_FIELD_NUMBER: _ClassVar[int]
    WEB_SOCKET_OPEN_FIELD_NUMBER: _ClassVar[int]
    WEB_SOCKET_PUSH_FIELD_NUMBER: _ClassVar[int]
    WEB_SOCKET_EXT_PUSH_OUTGOING_FIELD_NUMBER: _ClassVar[int]
    WEB_SOCKET_EXT_PUSH_DATA_FIELD_NUMBER: _ClassVar[int]
    WEB_SOCKET_CLOSE_FIELD_NUMBER: _ClassVar[int]
    WEB_SOCKET_COUNTS_FIELD_NUMBER: _ClassVar[int]
    bind: HttpServerAction.Bind
    secure_bind: HttpServerAction.SecureBind
    unbind: HttpServerAction.Unbind
    web_socket_bind: HttpServerAction.WebSocketBind
    web_socket_secure_bind: HttpServerAction.WebSocketSecureBind
    web_socket_unbind: HttpServerAction.WebSocketUnbind
    web_socket_open: HttpServerAction.WebSocketOpen
    web_socket_push: HttpServerAction.WebSocketPush
    web_socket_ext_push_outgoing: HttpServerAction.WebSocketExtPushOutgoing
    web_socket_ext_push_data: HttpServerAction.WebSocketExtPushData
    web_socket_close: HttpServerAction.WebSocketClose
    web_socket_counts: HttpServerAction.WebSocketCounts
    def __init__(self, bind: _Optional[_Union[HttpServerAction.Bind, _Mapping]] = ..., secure_bind: _Optional[_Union[HttpServerAction.SecureBind, _Mapping]] = ..., unbind: _Optional[_Union[HttpServerAction.Unbind, _Mapping]] = ..., web_socket_bind: _Optional[_Union[HttpServerAction.WebSocketBind, _Mapping]] = ..., web_socket_secure_bind: _Optional[_Union[HttpServerAction.WebSocketSecureBind, _Mapping]] = ..., web_socket_unbind: _Optional[_Union[HttpServerAction.WebSocketUnbind, _Mapping]] = ..., web_socket_open: _Optional[_Union[HttpServerAction.WebSocketOpen, _Mapping]] = ..., web_socket_push: _Optional[_Union[HttpServerAction.WebSocketPush, _Mapping]] = ..., web_socket_ext_push_outgoing: _Optional[_Union[HttpServerAction.WebSocketExtPushOutgoing, _Mapping]] = ..., web_socket_ext_push_data: _Optional[_Union[HttpServerAction.WebSocketExtPushData, _Mapping]] = ..., web_socket_close: _Optional[_Union[HttpServerAction.WebSocketClose, _Mapping]] = ..., web_socket_counts: _Optional[_Union[HttpServerAction.WebSocketCounts, _Mapping]] = ...) -> None: ...

class IncomingHttpRequest(_message.Message):
    __slots__ = ("source_socket_addr", "method", "url", "bound_path", "headers", "url_params", "query_params")
    class UrlParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SOURCE_SOCKET_ADDR_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    BOUND_PATH_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    URL_PARAMS_FIELD_NUMBER: _ClassVar[int]
    QUERY_PARAMS_FIELD_NUMBER: _ClassVar[int]
    source_socket_addr: str
    method: str
    url: str
    bound_path: str
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    url_params: _containers.ScalarMap[str, str]
    query_params: _containers.RepeatedCompositeFieldContainer[Header]
    def __init__(self, source_socket_addr: _Optional[str] = ..., method: _Optional[str] = ..., url: _Optional[str] = ..., bound_path: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., url_params: _Optional[_Mapping[str, str]] = ..., query_params: _Optional[_Iterable[_Union[Header, _Mapping]]] = ...) -> None: ...

class HttpServerRequest(_message.Message):
    __slots__ = ("http", "web_socket_open", "web_socket_push", "web_socket_close", "direct_link")
    class WebSocketOpen(_message.Message):
        __slots__ = ("path", "channel_id", "source_socket_addr", "handoff_socket", "handoff_token")
        PATH_FIELD_NUMBER: _ClassVar[int]
        CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
        SOURCE_SOCKET_ADDR_FIELD_NUMBER: _ClassVar[int]
        HANDOFF_SOCKET_FIELD_NUMBER: _ClassVar[int]
        HANDOFF_TOKEN_FIELD_NUMBER: _ClassVar[int]
        path: str
        channel_id: int
        source_socket_addr: str
        handoff_socket: str
        handoff_token: bytes
        def __init__(self, path: _Optional[str] = ..., channel_id: _Optional[int] = ..., source_socket_addr: _Optional[str] = ..., handoff_socket: _Optional[str] = ..., handoff_token: _Optional[bytes] = ...) -> None: ...
    class WebSocketPush(_message.Message):
        __slots__ = ("channel_id", "message_type")
        CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
        MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
        channel_id: int
        message_type: WsMessageType
        def __init__(self, channel_id: _Optional[int] = ..., message_type: _Optional[_Union[WsMessageType, str]] = ...) -> None: ...
    class WebSocketClose(_message.Message):
        __slots__ = ("channel_id",)
        CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
        channel_id: int
        def __init__(self, channel_id: _Optional[int] = ...) -> None: ...
    class DirectLink(_message.Message):
        __slots__ = ("handoff_socket", "handoff_token")
        HANDOFF_SOCKET_FIELD_NUMBER: _ClassVar[int]
        HANDOFF_TOKEN_FIELD_NUMBER: _ClassVar[int]
        handoff_socket: str
        handoff_token: bytes
        def __init__(self, handoff_socket: _Optional[str] = ..., handoff_token: _Optional[bytes] = ...) -> None: ...
    HTTP_FIELD_NUMBER: _ClassVar[int]
    WEB_SOCKET_OPEN_FIELD_NUMBER: _ClassVar[int]
    WEB_SOCKET_PUSH_FIELD_NUMBER: _ClassVar[int]
    WEB_SOCKET_CLOSE_FIELD_NUMBER: _ClassVar[int]
    DIRECT_LINK_FIELD_NUMBER: _ClassVar[int]
    http: IncomingHttpRequest
    web_socket_open: HttpServerRequest.WebSocketOpen
    web_socket_push: HttpServerRequest.WebSocketPush
    web_socket_close: HttpServerRequest.WebSocketClose
    direct_link: HttpServerRequest.DirectLink
    def __init__(self, http: _Optional[_Union[IncomingHttpRequest, _Mapping]] = ..., web_socket_open: _Optional[_Union[HttpServerRequest.WebSocketOpen, _Mapping]] = ..., web_socket_push: _Optional[_Union[HttpServerRequest.WebSocketPush, _Mapping]] = ..., web_socket_close: _Optional[_Union[HttpServerRequest.WebSocketClose, _Mapping]] = ..., direct_link: _Optional[_Union[HttpServerRequest.DirectLink, _Mapping]] = ...) -> None: ...

class HttpServerError(_message.Message):
    __slots__ = ("kind", "detail")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[HttpServerError.Kind]
        MalformedRequest: _ClassVar[HttpServerError.Kind]
        NoBlob: _ClassVar[HttpServerError.Kind]
        InvalidSourceProcess: _ClassVar[HttpServerError.Kind]
        WsPingPongTooLong: _ClassVar[HttpServerError.Kind]
        WsChannelNotFound: _ClassVar[HttpServerError.Kind]
        StateNotSaved: _ClassVar[HttpServerError.Kind]
    KIND_UNSPECIFIED: HttpServerError.Kind
    MalformedRequest: HttpServerError.Kind
    NoBlob: HttpServerError.Kind
    InvalidSourceProcess: HttpServerError.Kind
    WsPingPongTooLong: HttpServerError.Kind
    WsChannelNotFound: HttpServerError.Kind
    StateNotSaved: HttpServerError.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    kind: HttpServerError.Kind
    detail: str
    def __init__(self, kind: _Optional[_Union[HttpServerError.Kind, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class HttpServerResult(_message.Message):
    __slots__ = ("ok", "err")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERR_FIELD_NUMBER: _ClassVar[int]
    ok: Empty
    err: HttpServerError
    def __init__(self, ok: _Optional[_Union[Empty, _Mapping]] = ..., err: _Optional[_Union[HttpServerError, _Mapping]] = ...) -> None: ...

class OutgoingHttpRequest(_message.Message):
    __slots__ = ("method", "version", "url", "headers")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    method: str
    version: str
    url: str
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    def __init__(self, method: _Optional[str] = ..., version: _Optional[str] = ..., url: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ...) -> None: ...

class HttpClientAction(_message.Message):
    __slots__ = ("http", "web_socket_open", "web_socket_push", "web_socket_close", "metrics")
    class WebSocketOpen(_message.Message):
        __slots__ = ("url", "headers", "channel_id")
        URL_FIELD_NUMBER: _ClassVar[int]
        HEADERS_FIELD_NUMBER: _ClassVar[int]
        CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
        url: str
        headers: _containers.RepeatedCompositeFieldContainer[Header]
        channel_id: int
        def __init__(self, url: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., channel_id: _Optional[int] = ...) -> None: ...
    class WebSocketPush(_message.Message):
        __slots__ = ("channel_id", "message_type")
        CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
        MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
        channel_id: int
        message_type: WsMessageType
        def __init__(self, channel_id: _Optional[int] = ..., message_type: _Optional[_Union[WsMessageType, str]] = ...) -> None: ...
    class WebSocketClose(_message.Message):
        __slots__ = ("channel_id",)
        CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
        channel_id: int
        def __init__(self, channel_id: _Optional[int] = ...) -> None: ...
    HTTP_FIELD_NUMBER: _ClassVar[int]
    WEB_SOCKET_OPEN_FIELD_NUMBER: _ClassVar[int]
    WEB_SOCKET_PUSH_FIELD_NUMBER: _ClassVar[int]
    WEB_SOCKET_CLOSE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    http: OutgoingHttpRequest
    web_socket_open: HttpClientAction.WebSocketOpen
    web_socket_push: HttpClientAction.WebSocketPush
    web_socket_close: HttpClientAction.WebSocketClose
    metrics: Empty
    def __init__(self, http: _Optional[_Union[OutgoingHttpRequest, _Mapping]] = ..., web_socket_open: _Optional[_Union[HttpClientAction.WebSocketOpen, _Mapping]] = ..., web_socket_push: _Optional[_Union[HttpClientAction.WebSocketPush, _Mapping]] = ..., web_socket_close: _Optional[_Union[HttpClientAction.WebSocketClose, _Mapping]] = ..., metrics: _Optional[_Union[Empty, _Mapping]] = ...) -> None: ...

class HttpClientResponse(_message.Message):
    __slots__ = ("http", "web_socket_ack")
    HTTP_FIELD_NUMBER: _ClassVar[int]
    WEB_SOCKET_ACK_FIELD_NUMBER: _ClassVar[int]
    http: HttpResponse
    web_socket_ack: Empty
    def __init__(self, http: _Optional[_Union[HttpResponse, _Mapping]] = ..., web_socket_ack: _Optional[_Union[Empty, _Mapping]] = ...) -> None: ...

class HttpClientError(_message.Message):
    __slots__ = ("kind", "method", "url", "version", "channel_id", "message")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[HttpClientError.Kind]
        MalformedRequest: _ClassVar[HttpClientError.Kind]
        BadMethod: _ClassVar[HttpClientError.Kind]
        BadUrl: _ClassVar[HttpClientError.Kind]
        BadVersion: _ClassVar[HttpClientError.Kind]
        BuildRequestFailed: _ClassVar[HttpClientError.Kind]
        ExecuteRequestFailed: _ClassVar[HttpClientError.Kind]
        WsOpenFailed: _ClassVar[HttpClientError.Kind]
        WsPushUnknownChannel: _ClassVar[HttpClientError.Kind]
        WsPushNoBlob: _ClassVar[HttpClientError.Kind]
        WsPushBadText: _ClassVar[HttpClientError.Kind]
        WsCloseFailed: _ClassVar[HttpClientError.Kind]
        ResponseTooLarge: _ClassVar[HttpClientError.Kind]
        Denied: _ClassVar[HttpClientError.Kind]
        Timeout: _ClassVar[HttpClientError.Kind]
    KIND_UNSPECIFIED: HttpClientError.Kind
    MalformedRequest: HttpClientError.Kind
    BadMethod: HttpClientError.Kind
    BadUrl: HttpClientError.Kind
    BadVersion: HttpClientError.Kind
    BuildRequestFailed: HttpClientError.Kind
    ExecuteRequestFailed: HttpClientError.Kind
    WsOpenFailed: HttpClientError.Kind
    WsPushUnknownChannel: HttpClientError.Kind
    WsPushNoBlob: HttpClientError.Kind
    WsPushBadText: HttpClientError.Kind
    WsCloseFailed: HttpClientError.Kind
    ResponseTooLarge: HttpClientError.Kind
    Denied: HttpClientError.Kind
    Timeout: HttpClientError.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    kind: HttpClientError.Kind
    method: str
    url: str
    version: str
    channel_id: int
    message: str
    def __init__(self, kind: _Optional[_Union[HttpClientError.Kind, str]] = ..., method: _Optional[str] = ..., url: _Optional[str] = ..., version: _Optional[str] = ..., channel_id: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class HttpClientResult(_message.Message):
    __slots__ = ("ok", "err")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERR_FIELD_NUMBER: _ClassVar[int]
    ok: HttpClientResponse
    err: HttpClientError
    def __init__(self, ok: _Optional[_Union[HttpClientResponse, _Mapping]] = ..., err: _Optional[_Union[HttpClientError, _Mapping]] = ...) -> None: ...

class HttpClientRequest(_message.Message):
    __slots__ = ("web_socket_push", "web_socket_close")
    class WebSocketPush(_message.Message):
        __slots__ = ("channel_id", "message_type")
        CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
        MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
        channel_id: int
        message_type: WsMessageType
        def __init__(self, channel_id: _Optional[int] = ..., message_type: _Optional[_Union[WsMessageType, str]] = ...) -> None: ...
    class WebSocketClose(_message.Message):
        __slots__ = ("channel_id",)
        CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
        channel_id: int
        def __init__(self, channel_id: _Optional[int] = ...) -> None: ...
    WEB_SOCKET_PUSH_FIELD_NUMBER: _ClassVar[int]
    WEB_SOCKET_CLOSE_FIELD_NUMBER: _ClassVar[int]
    web_socket_push: HttpClientRequest.WebSocketPush
    web_socket_close: HttpClientRequest.WebSocketClose
    def __init__(self, web_socket_push: _Optional[_Union[HttpClientRequest.WebSocketPush, _Mapping]] = ..., web_socket_close: _Optional[_Union[HttpClientRequest.WebSocketClose, _Mapping]] = ...) -> None: ...
