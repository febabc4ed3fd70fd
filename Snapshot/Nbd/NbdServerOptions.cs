using System.Globalization;
using Journal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Snapshot.Nbd;

/// <summary>
/// Options of an <see cref="NbdServer"/>: where it listens, how much one connection and all of them may have in flight, and
/// limits.
/// Validated by <see cref="Validate"/> (the server calls it); <see cref="ToString"/> shows every field.
/// </summary>
public sealed class NbdServerOptions
{
    /// <summary>Default bound on requests in flight on one connection.</summary>
    public const int DefaultMaxRequestsInFlight = 64;

    /// <summary>Default bound on payload bytes (write data received, read data to send) in flight on one connection: 64 MiB.</summary>
    public const long DefaultMaxBytesInFlight = 64L << 20;

    /// <summary>Default bound on payload bytes in flight on all connections together: 256 MiB.</summary>
    public const long DefaultMaxServerBytesInFlight = 256L << 20;

    /// <summary>The largest READ or WRITE the server accepts, and the maximum block size it advertises: 32 MiB.</summary>
    public const int MaxRequestBytes = 32 << 20;

    /// <summary>Unix socket paths to listen on (the file is created with mode 0600; an existing socket file is replaced).</summary>
    public IReadOnlyList<string> UnixSockets { get; init; } = [];

    /// <summary>TCP endpoints to listen on ("127.0.0.1:10809"; port 0 picks a free port).</summary>
    public IReadOnlyList<System.Net.IPEndPoint> TcpEndpoints { get; init; } = [];

    /// <summary>Serve every export read-only: writes, trims and zero writes fail with EPERM.</summary>
    public bool ReadOnly { get; init; }

    /// <summary>Most connections at once (past it a new connection is closed at once, with a log line). Default 256.</summary>
    public int MaxConnections { get; init; } = 256;

    /// <summary>
    /// Most connections still negotiating (connected, no export chosen yet), part of <see cref="MaxConnections"/>. A
    /// connection that arrives when this many negotiate is taken, and the one that has negotiated longest is closed to
    /// make room, with a log line: connections that connect and send nothing hold at most this many places, and a client
    /// arriving meanwhile is not refused. Null (the default): a quarter of <see cref="MaxConnections"/>, at least 1
    /// (<see cref="NegotiatingBound"/>).
    /// </summary>
    public int? MaxNegotiatingConnections { get; init; }

    /// <summary>The bound in force on connections still negotiating: <see cref="MaxNegotiatingConnections"/> or its default.</summary>
    public int NegotiatingBound => MaxNegotiatingConnections ?? Math.Max(1, MaxConnections / 4);

    /// <summary>
    /// Most requests one connection has in flight (received, not yet replied to). At the bound the server stops reading
    /// that socket. Default 64.
    /// </summary>
    public int MaxRequestsInFlight { get; init; } = DefaultMaxRequestsInFlight;

    /// <summary>
    /// Most payload bytes one connection has in flight: data of writes received and not yet replied to, plus buffers of
    /// reads not yet sent. At the bound the server stops reading that socket. At least <see cref="MaxRequestBytes"/>
    /// (one request of the largest size always fits). Default 64 MiB.
    /// </summary>
    public long MaxBytesInFlight { get; init; } = DefaultMaxBytesInFlight;

    /// <summary>
    /// Most payload bytes all connections together have in flight (the server's buffer memory): a request that would pass
    /// it waits, its connection's socket not read, until other requests give room back (a read's reply sent, a write's
    /// data written). At least <see cref="MaxRequestBytes"/>. Default 256 MiB. A request is charged the size of the
    /// buffer it gets (its length rounded up to a power of two, at least 4 KiB).
    /// </summary>
    public long MaxServerBytesInFlight { get; init; } = DefaultMaxServerBytesInFlight;

    /// <summary>
    /// While requests wait for room under <see cref="MaxServerBytesInFlight"/>, a connection that holds room and whose
    /// client has not taken a reply (a send to it has not finished) or not delivered a WRITE's payload for this long is
    /// disconnected, which gives its room back: a client that stops reading cannot keep everyone else waiting. Default 30 s.
    /// </summary>
    public TimeSpan StalledClientTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Time a client has to finish the handshake before its connection is closed. Default 10 s.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// On shutdown, how long replies already computed may take to reach clients that do not read them before their
    /// connections are closed anyway. Default 10 s.
    /// </summary>
    public TimeSpan ShutdownGrace { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Where connections, disconnections and errors are logged (one line each). Default: nowhere.</summary>
    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;

    /// <summary>Checks every option; throws <see cref="JournalArgumentException"/> with one line.</summary>
    public void Validate()
    {
        if (UnixSockets.Count == 0 && TcpEndpoints.Count == 0)
            throw new SnapshotArgumentException("nbd server: nothing to listen on: give a unix socket path or a TCP endpoint");
        foreach (var p in UnixSockets)
        {
            if (string.IsNullOrEmpty(p)) throw new SnapshotArgumentException("nbd server: empty unix socket path");
            if (System.Text.Encoding.UTF8.GetByteCount(Path.GetFullPath(p)) > 107)
                throw new SnapshotArgumentException($"{p}: unix socket path is too long (at most 107 bytes)");
        }
        if (MaxConnections < 1) throw new SnapshotArgumentException($"nbd server: --max-connections {MaxConnections} must be at least 1");
        if (MaxNegotiatingConnections is { } negotiating && (negotiating < 1 || negotiating > MaxConnections))
            throw new SnapshotArgumentException($"nbd server: negotiating-connection bound {negotiating} must be at least 1 and at most --max-connections {MaxConnections}");
        if (MaxRequestsInFlight < 1) throw new SnapshotArgumentException($"nbd server: in-flight request bound {MaxRequestsInFlight} must be at least 1");
        if (MaxBytesInFlight < MaxRequestBytes)
            throw new SnapshotArgumentException($"nbd server: in-flight byte bound {MaxBytesInFlight} must be at least {MaxRequestBytes} (one largest request)");
        if (MaxServerBytesInFlight < MaxRequestBytes)
            throw new SnapshotArgumentException($"nbd server: server-wide in-flight byte bound {MaxServerBytesInFlight} must be at least {MaxRequestBytes} (one largest request)");
        if (StalledClientTimeout <= TimeSpan.Zero) throw new SnapshotArgumentException("nbd server: stalled-client timeout must be positive");
        if (HandshakeTimeout <= TimeSpan.Zero) throw new SnapshotArgumentException("nbd server: handshake timeout must be positive");
        if (ShutdownGrace < TimeSpan.Zero) throw new SnapshotArgumentException("nbd server: shutdown grace must not be negative");
    }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"NbdServerOptions(unix [{string.Join(", ", UnixSockets)}], tcp [{string.Join(", ", TcpEndpoints)}], read-only {ReadOnly}, max connections {MaxConnections}, negotiating at most {NegotiatingBound}{(MaxNegotiatingConnections is null ? " (a quarter)" : "")}, in flight per connection {MaxRequestsInFlight} requests / {MaxBytesInFlight} bytes, in flight on all connections {MaxServerBytesInFlight} bytes, stalled-client timeout {StalledClientTimeout.TotalSeconds} s, handshake timeout {HandshakeTimeout.TotalSeconds} s, shutdown grace {ShutdownGrace.TotalSeconds} s)");
}
