using Snapshot.Sync;

namespace Snapshot.Nbd;

/// <summary>
/// What one connection has in flight: requests received and not yet replied to, and their payload bytes (write data
/// received, read buffers), against the connection's bounds. The connection's reader takes a request's share before it
/// reads the request's payload; the sender gives it back once the reply has been sent (or dropped).
/// </summary>
/// <remarks>
/// <para><b>The rule (the seeds' throttle lesson at the network edge):</b> over the bound the reader stops reading the
/// socket and waits in <see cref="AcquireAsync"/> holding nothing: no buffer (it rents the payload buffer only after
/// the share is granted), no range lock, not the server's write gate, no store lock. What it waits for — its own
/// requests' replies being sent — needs nothing the reader or any other connection holds: workers finish store I/O
/// holding only their own request's range lock, and the sender needs only the socket. So a client that pushes requests
/// faster than it reads replies (or never reads them) stalls only itself, with at most its bound of memory, while every
/// other client and the store's snapshot create, delete and merge go on.</para>
/// <para>The server's own bound on all connections' bytes together (<see cref="NbdServerBudget"/>) is taken after this
/// one, with the same rule.</para>
/// <para>A request of the largest size (<see cref="NbdServerOptions.MaxRequestBytes"/>) always fits an empty budget
/// (the options require it), so the reader always makes progress once its earlier requests are answered.</para>
/// <para>Locking: <c>_lock</c> protects the counters; held for a few instructions; nothing waits under it.</para>
/// </remarks>
internal sealed class NbdInflightBudget
{
    private readonly object _lock = new();
    private readonly AsyncAutoSignal _readerSignal = new();
    private int _requests;
    private long _bytes;
    private bool _readerWaiting;
    private int _peakRequests;
    private long _peakBytes;
    private long _waits;

    public NbdInflightBudget(int maxRequests, long maxBytes)
    {
        MaxRequests = maxRequests;
        MaxBytes = maxBytes;
    }

    /// <summary>The request bound.</summary>
    public int MaxRequests { get; }

    /// <summary>The byte bound.</summary>
    public long MaxBytes { get; }

    /// <summary>Payload bytes in flight now.</summary>
    public long Bytes { get { lock (_lock) return _bytes; } }

    /// <summary>Requests in flight now.</summary>
    public int Requests { get { lock (_lock) return _requests; } }

    /// <summary>Most requests in flight at once.</summary>
    public int PeakRequests { get { lock (_lock) return _peakRequests; } }

    /// <summary>Most payload bytes in flight at once.</summary>
    public long PeakBytes { get { lock (_lock) return _peakBytes; } }

    /// <summary>Times the reader had to stop reading because the connection was at its bound.</summary>
    public long Waits { get { lock (_lock) return _waits; } }

    /// <summary>
    /// Takes one request and <paramref name="bytes"/> of payload; waits, holding nothing, while they do not fit. Only the
    /// connection's reader calls it. Returns false if <paramref name="stop"/> is set while waiting.
    /// </summary>
    public async ValueTask<bool> AcquireAsync(long bytes, Func<bool> stop)
    {
        while (true)
        {
            lock (_lock)
            {
                if (_requests + 1 <= MaxRequests && _bytes + bytes <= MaxBytes)
                {
                    _requests++;
                    _bytes += bytes;
                    if (_requests > _peakRequests) _peakRequests = _requests;
                    if (_bytes > _peakBytes) _peakBytes = _bytes;
                    return true;
                }
                _readerWaiting = true;
                _waits++;
            }
            if (stop()) return false;
            // Why we wait: the connection is at its bound; replies being sent give their share back. Nothing is held.
            await _readerSignal.WaitAsync().ConfigureAwait(false);
            if (stop()) return false;
        }
    }

    /// <summary>Gives back one request and <paramref name="bytes"/>; wakes the reader if it waits.</summary>
    public void Release(long bytes)
    {
        bool wake;
        lock (_lock)
        {
            _requests--;
            _bytes -= bytes;
            wake = _readerWaiting;
            _readerWaiting = false;
        }
        if (wake) _readerSignal.Set();
    }

    /// <summary>
    /// Gives back <paramref name="bytes"/> of a request that stays in flight (a WRITE whose data is written and whose
    /// buffer is returned before its reply is sent); wakes the reader if it waits.
    /// </summary>
    public void ReleaseBytes(long bytes)
    {
        bool wake;
        lock (_lock)
        {
            _bytes -= bytes;
            wake = _readerWaiting;
            _readerWaiting = false;
        }
        if (wake) _readerSignal.Set();
    }

    /// <summary>Wakes the reader so it sees a stop request.</summary>
    public void WakeReader() => _readerSignal.Set();
}
