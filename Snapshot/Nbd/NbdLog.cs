using Microsoft.Extensions.Logging;

namespace Snapshot.Nbd;

/// <summary>
/// Every line the NBD server logs: one line per event, never a stack trace (exceptions are logged by their message).
/// Free text (reasons, messages) passes through <see cref="NbdLogText.Escape"/>, so no control character reaches the log;
/// text from clients is quoted into messages through <see cref="NbdLogText.Client"/> (escaped and cut to 256 characters).
/// The generated methods of such lines end in <c>Core</c>; callers use the wrapper of the same name without it, which escapes.
/// </summary>
internal static partial class NbdLog
{
    [LoggerMessage(EventId = NbdEventIds.Listening, EventName = "Listening", Level = LogLevel.Information,
        Message = "listening on {Address}")]
    public static partial void Listening(ILogger logger, string address);

    [LoggerMessage(EventId = NbdEventIds.ConnectionOpened, EventName = "ConnectionOpened", Level = LogLevel.Information,
        Message = "connection #{Id} from {Peer}: opened")]
    public static partial void Opened(ILogger logger, long id, string peer);

    [LoggerMessage(EventId = NbdEventIds.ConnectionRefused, EventName = "ConnectionRefused", Level = LogLevel.Warning,
        Message = "connection from {Peer} refused: the server already has {Max} connections")]
    public static partial void RefusedLimit(ILogger logger, string peer, int max);

    [LoggerMessage(EventId = NbdEventIds.NegotiationMadeRoom, EventName = "NegotiationMadeRoom", Level = LogLevel.Warning,
        Message = "connection #{Id} from {Peer}: closed after {Seconds} s of negotiation to make room for a new connection: {Max} connections were negotiating")]
    public static partial void MadeRoom(ILogger logger, long id, string peer, double seconds, int max);

    [LoggerMessage(EventId = NbdEventIds.ExportNegotiated, EventName = "ExportNegotiated", Level = LogLevel.Information,
        Message = "connection #{Id}: export {Export} ({Size} bytes{ReadOnly}), {Replies} replies{Contexts}")]
    public static partial void Negotiated(ILogger logger, long id, string export, long size, string readOnly, string replies, string contexts);

    [LoggerMessage(EventId = NbdEventIds.HandshakeFailed, EventName = "HandshakeFailed", Level = LogLevel.Warning,
        Message = "connection #{Id}: handshake failed: {Reason}")]
    public static partial void HandshakeFailedCore(ILogger logger, long id, string reason);

    public static void HandshakeFailed(ILogger logger, long id, string reason) => HandshakeFailedCore(logger, id, NbdLogText.Escape(reason));

    [LoggerMessage(EventId = NbdEventIds.ConnectionClosed, EventName = "ConnectionClosed", Level = LogLevel.Information,
        Message = "connection #{Id} closed: {Reason} ({Requests} requests)")]
    public static partial void ClosedCore(ILogger logger, long id, string reason, long requests);

    public static void Closed(ILogger logger, long id, string reason, long requests) => ClosedCore(logger, id, NbdLogText.Escape(reason), requests);

    [LoggerMessage(EventId = NbdEventIds.ProtocolError, EventName = "ProtocolError", Level = LogLevel.Warning,
        Message = "connection #{Id}: protocol error: {Reason}; closing the connection")]
    public static partial void ProtocolErrorCore(ILogger logger, long id, string reason);

    public static void ProtocolError(ILogger logger, long id, string reason) => ProtocolErrorCore(logger, id, NbdLogText.Escape(reason));

    [LoggerMessage(EventId = NbdEventIds.RequestFailed, EventName = "RequestFailed", Level = LogLevel.Warning,
        Message = "connection #{Id} ({Export}): {Request}: {Error}: {Message}")]
    public static partial void RequestFailedCore(ILogger logger, long id, string export, string request, string error, string message);

    public static void RequestFailed(ILogger logger, long id, string export, string request, string error, string message) => RequestFailedCore(logger, id, NbdLogText.Escape(export), request, error, NbdLogText.Escape(message));

    [LoggerMessage(EventId = NbdEventIds.OptionRefused, EventName = "OptionRefused", Level = LogLevel.Warning,
        Message = "connection #{Id}: {Option} refused ({Reply}): {Message}")]
    public static partial void OptionRefusedCore(ILogger logger, long id, string option, string reply, string message);

    public static void OptionRefused(ILogger logger, long id, string option, string reply, string message) => OptionRefusedCore(logger, id, option, reply, NbdLogText.Escape(message));

    [LoggerMessage(EventId = NbdEventIds.OptionUnsupported, EventName = "OptionUnsupported", Level = LogLevel.Debug,
        Message = "connection #{Id}: {Option} not supported")]
    public static partial void OptionUnsupported(ILogger logger, long id, string option);

    [LoggerMessage(EventId = NbdEventIds.RepliesNotTaken, EventName = "RepliesNotTaken", Level = LogLevel.Information,
        Message = "connection #{Id}: client stopped taking replies: {Message}")]
    public static partial void SendFailedCore(ILogger logger, long id, string message);

    public static void SendFailed(ILogger logger, long id, string message) => SendFailedCore(logger, id, NbdLogText.Escape(message));

    [LoggerMessage(EventId = NbdEventIds.Stopping, EventName = "Stopping", Level = LogLevel.Information,
        Message = "stopping: no new connections; finishing {Connections} connections' requests in flight")]
    public static partial void Stopping(ILogger logger, int connections);

    [LoggerMessage(EventId = NbdEventIds.Stopped, EventName = "Stopped", Level = LogLevel.Information,
        Message = "stopped: every request in flight finished and the store flushed")]
    public static partial void Stopped(ILogger logger);

    [LoggerMessage(EventId = NbdEventIds.AcceptFailed, EventName = "AcceptFailed", Level = LogLevel.Warning,
        Message = "accepting a connection failed: {Message}")]
    public static partial void AcceptFailed(ILogger logger, string message);

    [LoggerMessage(EventId = NbdEventIds.Disconnecting, EventName = "Disconnecting", Level = LogLevel.Information,
        Message = "export {Export}: disconnecting {Count} connections ({Reason})")]
    public static partial void Disconnecting(ILogger logger, string export, int count, string reason);

    [LoggerMessage(EventId = NbdEventIds.StalledClientDisconnected, EventName = "StalledClientDisconnected", Level = LogLevel.Warning,
        Message = "connection #{Id}: disconnecting: its client took no reply and sent no data for {Seconds} s while other connections waited for buffer room ({Bytes} bytes held)")]
    public static partial void StalledClient(ILogger logger, long id, double seconds, long bytes);

    [LoggerMessage(EventId = NbdEventIds.ErrorsNotLogged, EventName = "ErrorsNotLogged", Level = LogLevel.Warning,
        Message = "connection #{Id}: {Logged} errors logged; further errors of this connection are counted but not logged")]
    public static partial void ErrorsNotLogged(ILogger logger, long id, int logged);

    [LoggerMessage(EventId = NbdEventIds.ErrorsSummary, EventName = "ErrorsSummary", Level = LogLevel.Warning,
        Message = "connection #{Id}: {NotLogged} more errors were not logged ({Total} in all)")]
    public static partial void ErrorsSummary(ILogger logger, long id, long notLogged, long total);

    [LoggerMessage(EventId = NbdEventIds.InternalError, EventName = "InternalError", Level = LogLevel.Error,
        Message = "connection #{Id}: internal error: {Type}: {Message}")]
    public static partial void InternalErrorCore(ILogger logger, long id, string type, string message);

    public static void InternalError(ILogger logger, long id, string type, string message) => InternalErrorCore(logger, id, type, NbdLogText.Escape(message));
}

/// <summary>The event ids of the NBD server's log (category <c>nbd</c>), documented in docs/metrics.md.</summary>
public static class NbdEventIds
{
    /// <summary>Information: the server listens on an address.</summary>
    public const int Listening = 2100;

    /// <summary>Information: a client connected.</summary>
    public const int ConnectionOpened = 2101;

    /// <summary>Warning: a connection was refused because the server has its maximum of connections.</summary>
    public const int ConnectionRefused = 2102;

    /// <summary>Information: a connection chose its export and entered transmission.</summary>
    public const int ExportNegotiated = 2103;

    /// <summary>Warning: a handshake failed and the connection closed (a wrong magic, short or garbage input, the client left).</summary>
    public const int HandshakeFailed = 2104;

    /// <summary>Information: a connection closed, and why.</summary>
    public const int ConnectionClosed = 2105;

    /// <summary>Warning: a client broke the protocol in transmission; its connection is closed.</summary>
    public const int ProtocolError = 2106;

    /// <summary>Warning: a request got an error reply (out of range, read-only export, no space, I/O error).</summary>
    public const int RequestFailed = 2107;

    /// <summary>Warning: an option got an error reply during negotiation.</summary>
    public const int OptionRefused = 2108;

    /// <summary>Debug: an option the server does not support (the negotiation goes on).</summary>
    public const int OptionUnsupported = 2109;

    /// <summary>Information: sending a reply failed: the client stopped reading replies or left.</summary>
    public const int RepliesNotTaken = 2110;

    /// <summary>Information: the server stopped accepting and finishes the requests in flight.</summary>
    public const int Stopping = 2111;

    /// <summary>Information: the server stopped: every request finished and the store flushed.</summary>
    public const int Stopped = 2112;

    /// <summary>Warning: accepting a connection failed.</summary>
    public const int AcceptFailed = 2113;

    /// <summary>Information: an export's connections are being disconnected (a forced delete or merge).</summary>
    public const int Disconnecting = 2114;

    /// <summary>Error: a request failed in a way the server does not expect; the connection is closed.</summary>
    public const int InternalError = 2115;

    /// <summary>
    /// Warning: a connection was disconnected because it held buffer room other connections waited for and its client had
    /// taken no reply (or sent no WRITE data) for <see cref="NbdServerOptions.StalledClientTimeout"/>.
    /// </summary>
    public const int StalledClientDisconnected = 2116;

    /// <summary>
    /// Warning: a connection's error replies passed the number logged per connection (10); the rest are counted
    /// (<c>nbd.request.errors</c>) but not logged, and <see cref="ErrorsSummary"/> gives their number when it closes.
    /// </summary>
    public const int ErrorsNotLogged = 2117;

    /// <summary>Warning: at a connection's close, how many of its error replies were not logged, and its total.</summary>
    public const int ErrorsSummary = 2118;

    /// <summary>
    /// Warning: a connection still negotiating was closed to make room for a new one, because
    /// <see cref="NbdServerOptions.NegotiatingBound"/> connections were negotiating; it was the one negotiating longest.
    /// </summary>
    public const int NegotiationMadeRoom = 2119;
}
