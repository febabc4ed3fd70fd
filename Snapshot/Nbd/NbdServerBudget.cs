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
/// <para><b>Who gets room first.</b> Room given back goes to the waiters smallest request first (the same size: the one
/// that came first), as long as the smallest fits; a new request that fits the free room takes it at once (every waiter
/// wants more than is free). So a client doing small I/O is not queued behind large reads of clients that stopped
/// reading, which would each take room only to park it; a large request waits while smaller ones keep the server full,
/// which happens only under the bound's pressure.</para>
/// <para><b>A reserve for small requests.</b> Requests of more than <see cref="SmallRequestBytes"/> may fill the bound only
/// up to <see cref="Reserve"/> below it (an eighth of it, less if that would leave no room for one largest request), so
/// large reads that clients park by not reading their replies cannot take the last of it: a client doing I/O of 1 MiB
/// or less is served at once, not only once the stalled clients have been disconnected.</para>
/// <para>Locking: <c>_lock</c> protects the counters and the waiter list; held for a few instructions (a scan of at most
/// one waiter per connection); nothing waits under it and nothing else is taken under it. A grant completes the waiter's
/// task under it; its continuation runs elsewhere.</para>
/// </remarks>
internal sealed class NbdServerBudget
{
    private readonly object _lock = new();
    private readonly NbdServer? _server;
    private readonly List<Waiter> _waiters = new(); // at most one per connection (its reader)
    private long _bytes;
    private long _peakBytes;
    private long _waits;
    private long _sequence;

    private sealed class Waiter(long bytes, long sequence)
    {
        public readonly long Bytes = bytes;
        public readonly long Sequence = sequence;
        public readonly TaskCompletionSource Granted = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>Requests of at most this many bytes may use the <see cref="Reserve"/>.</summary>
    public const long SmallRequestBytes = 1L << 20;

    public NbdServerBudget(long maxBytes, TimeSpan stalledTimeout, NbdServer? server)
    {
        MaxBytes = maxBytes;
        Reserve = Math.Max(0, Math.Min(maxBytes / 8, maxBytes - NbdServerOptions.MaxRequestBytes));
        StalledTimeout = stalledTimeout;
        _server = server;
    }

    /// <summary>The byte bound.</summary>
    public long MaxBytes { get; }

    /// <summary>The top of the bound only requests of at most <see cref="SmallRequestBytes"/> may use.</summary>
    public long Reserve { get; }

    /// <summary>How long a reader waits before stalled clients are disconnected.</summary>
    public TimeSpan StalledTimeout { get; }

    /// <summary>Bytes in flight now.</summary>
    public long Bytes { get { lock (_lock) return _bytes; } }

    /// <summary>Most bytes in flight at once since the server started.</summary>
    public long PeakBytes { get { lock (_lock) return _peakBytes; } }

    /// <summary>Times a reader had to wait for room.</summary>
    public long Waits { get { lock (_lock) return _waits; } }

    /// <summary>
    /// Takes <paramref name="bytes"/>; waits, holding nothing another connection needs, while they do not fit (or smaller
    /// requests wait before it). Returns false when <paramref name="stop"/> is cancelled first (nothing taken).
    /// </summary>
    public async ValueTask<bool> AcquireAsync(long bytes, CancellationToken stop)
    {
        lock (_lock)
        {
            // No waiter fits (grants run whenever room comes back), and a request that fits is smaller than all of
            // them (a larger one would fit too, the reserve only lowering the limit for larger ones): it goes first.
            if (TryTakeLocked(bytes)) return true;
        }
        var w = new Waiter(bytes, Interlocked.Increment(ref _sequence));
        lock (_lock)
        {
            if (TryTakeLocked(bytes)) return true;
            _waiters.Add(w);
            _waits++;
        }
        long waitStarted = Environment.TickCount64;
        while (true)
        {
            long left = (long)StalledTimeout.TotalMilliseconds - (Environment.TickCount64 - waitStarted);
            if (left > 0)
            {
                // Why we wait: the server is at its byte bound; room comes back as other requests' replies are sent or
                // their writes done, or when a stalled client is disconnected. Nothing another connection needs is held
                // (see the remarks). WaitAsync drops its timer when the grant comes first (a Task.Delay beside it would
                // stay armed for the rest of the timeout, one per wait).
                try
                {
                    await w.Granted.Task.WaitAsync(TimeSpan.FromMilliseconds(left), stop).ConfigureAwait(false);
                }
                catch (Exception e) when (e is TimeoutException or OperationCanceledException)
                {
                    // Checked below: granted meanwhile, stopped, or the timeout reached.
                }
            }
            if (w.Granted.Task.IsCompleted) return true;
            if (stop.IsCancellationRequested)
            {
                lock (_lock)
                {
                    if (_waiters.Remove(w)) return false;
                }
                Release(bytes); // granted just now: give it back
                return false;
            }
            if (Environment.TickCount64 - waitStarted >= (long)StalledTimeout.TotalMilliseconds)
            {
                // Waited the whole timeout: the room is held by connections whose clients do not give it back.
                _server?.DisconnectStalledClients(StalledTimeout);
                waitStarted = Environment.TickCount64;
            }
        }
    }

    /// <summary>Gives back <paramref name="bytes"/> and grants waiters what now fits, smallest first.</summary>
    public void Release(long bytes)
    {
        if (bytes == 0) return;
        lock (_lock)
        {
            _bytes -= bytes;
            while (_waiters.Count > 0)
            {
                int best = 0;
                for (int i = 1; i < _waiters.Count; i++)
                {
                    var (a, b) = (_waiters[i], _waiters[best]);
                    if (a.Bytes < b.Bytes || (a.Bytes == b.Bytes && a.Sequence < b.Sequence)) best = i;
                }
                var w = _waiters[best];
                if (!TryTakeLocked(w.Bytes)) break;
                _waiters.RemoveAt(best);
                w.Granted.TrySetResult(); // its continuation runs elsewhere (RunContinuationsAsynchronously)
            }
        }
    }

    private bool TryTakeLocked(long bytes)
    {
        if (_bytes + bytes > (bytes <= SmallRequestBytes ? MaxBytes : MaxBytes - Reserve)) return false;
        _bytes += bytes;
        if (_bytes > _peakBytes) _peakBytes = _bytes;
        return true;
    }
}
