using Snapshot.Sync;

namespace Snapshot.Nbd;

/// <summary>
/// Chunk-range locks of one volume, taken by every NBD READ (shared) and WRITE / WRITE_ZEROES (exclusive) for the
/// chunks the request touches, so that requests from any connections that overlap run one after the other: a read
/// sees every chunk wholly before or wholly after a concurrent write (never a half-written chunk), and a write is
/// never interleaved with another over the same chunks.
/// </summary>
/// <remarks>
/// <para>Locking: <c>_lock</c> (a monitor) protects the held ranges and the waiters; it is held to scan the held ranges
/// (at most the requests in flight on the volume) and never across an await. Waiters are woken by
/// <see cref="AsyncAutoSignal.Set"/>, which runs nothing inline.</para>
/// <para>The wait rule: <see cref="TryAcquire"/> never waits. A request that finds a conflict is registered as a
/// waiter, lets go of everything it holds (the server's write gate included), awaits its signal, and tries again from
/// the start. A range lock is held only across store I/O (and, for a FUA write, a store flush), never while a reply is
/// sent or while waiting for anything else, so every holder finishes in the time its own I/O takes and no waiter holds
/// what a holder needs.</para>
/// </remarks>
internal sealed class NbdRangeLocks
{
    private readonly object _lock = new();
    private readonly List<Held> _held = new();
    private readonly List<AsyncAutoSignal> _waiters = new();

    private readonly record struct Held(long First, long Last, bool Exclusive, object Owner);

    /// <summary>Ranges held now (for tests).</summary>
    public int HeldCount { get { lock (_lock) return _held.Count; } }

    /// <summary>
    /// Takes chunks [<paramref name="first"/>, <paramref name="last"/>] for <paramref name="owner"/> if no overlapping
    /// range is held in a conflicting mode; otherwise registers <paramref name="waiter"/> to be set at the next release
    /// and returns false.
    /// </summary>
    public bool TryAcquire(long first, long last, bool exclusive, object owner, AsyncAutoSignal waiter)
    {
        lock (_lock)
        {
            foreach (var h in _held)
            {
                if (h.Last < first || h.First > last) continue;
                if (!exclusive && !h.Exclusive) continue;
                _waiters.Add(waiter);
                return false;
            }
            _held.Add(new Held(first, last, exclusive, owner));
            return true;
        }
    }

    /// <summary>Releases what <paramref name="owner"/> holds and wakes every waiter (each tries again).</summary>
    public void Release(object owner)
    {
        lock (_lock)
        {
            for (int i = _held.Count - 1; i >= 0; i--)
                if (ReferenceEquals(_held[i].Owner, owner))
                {
                    _held.RemoveAt(i);
                    break;
                }
            foreach (var w in _waiters) w.Set();
            _waiters.Clear();
        }
    }
}
