namespace Snapshot.Nbd;

/// <summary>
/// The payload bytes all connections of a server have in flight together (<see cref="NbdServerOptions.MaxServerBytesInFlight"/>),
/// the bound on the server's buffer memory: without it each connection's own bound (<see cref="NbdInflightBudget"/>)
/// times the number of connections would be the only limit. A connection's reader takes a request's bytes here after
/// its connection's share and before it rents the request's buffer; they are given back when the buffer is (a WRITE's
/// once its data is written, a READ's once its reply is sent or dropped).
/// </summary>
/// <remarks>
/// <para><b>The waiting rule.</b> A reader whose request does not fit waits in <see cref="AcquireAsync"/> holding
/// nothing another connection needs: no buffer (it rents one only once the bytes are granted), no range lock, not the
/// write gate, nothing of the store, and no bytes of this budget for the request it waits for; what it does hold is
/// its own connection's request slot, which only its own connection uses. What it waits for — other requests' replies
/// being sent, their writes reaching the store — needs nothing it holds: workers and senders never take bytes of this
/// budget. So waiting here cannot deadlock.</para>
/// <para><b>Why waiting ends.</b> Room is given back when a reply is sent, which depends on its client reading. A client
/// that stops reading (or stops sending a WRITE's payload) would hold its room for ever and could starve every other
/// connection. So a reader that has waited <see cref="NbdServerOptions.StalledClientTimeout"/> asks the server to
/// disconnect every connection that holds room and whose socket has not finished a send (or a payload receive) for
/// that long (<see cref="NbdServer.DisconnectStalledClients"/>); closing the socket drops its replies and returns its
/// buffers. A well-behaved client is never disconnected for this, and nothing is disconnected while nobody waits.</para>
/// <para>Waiters are woken all at once when room is given back, and each takes what fits (a small request does not
/// queue behind a large one).</para>
/// <para>Locking: <c>_lock</c> protects the counters and the wake-up source; held for a few instructions; nothing waits
/// under it and nothing else is taken under it.</para>
/// </remarks>
internal sealed class NbdServerBudget
{
    private readonly object _lock = new();
    private readonly NbdServer? _server;
    private long _bytes;
    private long _peakBytes;
    private long _waits;
    private TaskCompletionSource? _freed; // completed (and cleared) when bytes are given back while someone waits

    public NbdServerBudget(long maxBytes, TimeSpan stalledTimeout, NbdServer? server)
    {
        MaxBytes = maxBytes;
        StalledTimeout = stalledTimeout;
        _server = server;
    }

    /// <summary>The byte bound.</summary>
    public long MaxBytes { get; }

    /// <summary>How long a reader waits before stalled clients are disconnected.</summary>
    public TimeSpan StalledTimeout { get; }

    /// <summary>Bytes in flight now.</summary>
    public long Bytes { get { lock (_lock) return _bytes; } }

    /// <summary>Most bytes in flight at once since the server started.</summary>
    public long PeakBytes { get { lock (_lock) return _peakBytes; } }

    /// <summary>Times a reader had to wait for room.</summary>
    public long Waits { get { lock (_lock) return _waits; } }

    /// <summary>
    /// Takes <paramref name="bytes"/>; waits, holding nothing another connection needs, while they do not fit. Returns
    /// false when <paramref name="stop"/> is cancelled first (nothing taken).
    /// </summary>
    public async ValueTask<bool> AcquireAsync(long bytes, CancellationToken stop)
    {
        long waitStarted = 0;
        while (true)
        {
            Task freed;
            lock (_lock)
            {
                if (_bytes + bytes <= MaxBytes)
                {
                    _bytes += bytes;
                    if (_bytes > _peakBytes) _peakBytes = _bytes;
                    return true;
                }
                if (waitStarted == 0) _waits++;
                freed = (_freed ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
            }
            if (stop.IsCancellationRequested) return false;
            long now = Environment.TickCount64;
            if (waitStarted == 0) waitStarted = now;
            long left = (long)StalledTimeout.TotalMilliseconds - (now - waitStarted);
            if (left <= 0)
            {
                // Waited the whole timeout: the room is held by connections whose clients do not take it back.
                _server?.DisconnectStalledClients(StalledTimeout);
                waitStarted = now;
                left = (long)StalledTimeout.TotalMilliseconds;
            }
            // Why we wait: the server is at its byte bound; room comes back as other requests' replies are sent or their
            // writes done, or when a stalled client is disconnected. Nothing another connection needs is held (remarks).
            await Task.WhenAny(freed, Task.Delay(TimeSpan.FromMilliseconds(left), stop)).ConfigureAwait(false);
        }
    }

    /// <summary>Gives back <paramref name="bytes"/> and wakes every waiter.</summary>
    public void Release(long bytes)
    {
        if (bytes == 0) return;
        TaskCompletionSource? wake;
        lock (_lock)
        {
            _bytes -= bytes;
            wake = _freed;
            _freed = null;
        }
        wake?.TrySetResult();
    }
}
