using Microsoft.Extensions.Logging;

namespace Snapshot.Nbd;

/// <summary>
/// Every line the NBD server logs: one line per event, never a stack trace (exceptions are logged by their message).
/// </summary>
internal static partial class NbdLog
{
    [LoggerMessage(1, LogLevel.Information, "listening on {Address}")]
    public static partial void Listening(ILogger logger, string address);

    [LoggerMessage(2, LogLevel.Information, "connection #{Id} from {Peer}: opened")]
    public static partial void Opened(ILogger logger, long id, string peer);

    [LoggerMessage(3, LogLevel.Warning, "connection from {Peer} refused: the server already has {Max} connections")]
    public static partial void RefusedLimit(ILogger logger, string peer, int max);

    [LoggerMessage(4, LogLevel.Information, "connection #{Id}: export {Export} ({Size} bytes{ReadOnly}), {Replies} replies{Contexts}")]
    public static partial void Negotiated(ILogger logger, long id, string export, long size, string readOnly, string replies, string contexts);

    [LoggerMessage(5, LogLevel.Warning, "connection #{Id}: handshake failed: {Reason}")]
    public static partial void HandshakeFailed(ILogger logger, long id, string reason);

    [LoggerMessage(6, LogLevel.Information, "connection #{Id} closed: {Reason} ({Requests} requests)")]
    public static partial void Closed(ILogger logger, long id, string reason, long requests);

    [LoggerMessage(7, LogLevel.Warning, "connection #{Id}: protocol error: {Reason}; closing the connection")]
    public static partial void ProtocolError(ILogger logger, long id, string reason);

    [LoggerMessage(8, LogLevel.Warning, "connection #{Id} ({Export}): {Request}: {Error}: {Message}")]
    public static partial void RequestFailed(ILogger logger, long id, string export, string request, string error, string message);

    [LoggerMessage(9, LogLevel.Warning, "connection #{Id}: {Option} refused ({Reply}): {Message}")]
    public static partial void OptionRefused(ILogger logger, long id, string option, string reply, string message);

    [LoggerMessage(10, LogLevel.Debug, "connection #{Id}: {Option} not supported")]
    public static partial void OptionUnsupported(ILogger logger, long id, string option);

    [LoggerMessage(11, LogLevel.Information, "connection #{Id}: client stopped taking replies: {Message}")]
    public static partial void SendFailed(ILogger logger, long id, string message);

    [LoggerMessage(12, LogLevel.Information, "stopping: no new connections; finishing {Connections} connections' requests in flight")]
    public static partial void Stopping(ILogger logger, int connections);

    [LoggerMessage(13, LogLevel.Information, "stopped: every request in flight finished and the store flushed")]
    public static partial void Stopped(ILogger logger);

    [LoggerMessage(14, LogLevel.Warning, "accepting a connection failed: {Message}")]
    public static partial void AcceptFailed(ILogger logger, string message);

    [LoggerMessage(15, LogLevel.Information, "export {Export}: disconnecting {Count} connections ({Reason})")]
    public static partial void Disconnecting(ILogger logger, string export, int count, string reason);

    [LoggerMessage(16, LogLevel.Error, "connection #{Id}: internal error: {Type}: {Message}")]
    public static partial void InternalError(ILogger logger, long id, string type, string message);
}
