using Microsoft.Extensions.ObjectPool;

namespace Journal.Memory;

/// <summary>
/// The journal's buffer pool: power-of-two size classes recycled through <see cref="ObjectPool{T}"/>, with a fixed
/// byte budget and an <see cref="EmergencyReserve"/> layered on top (an object pool alone bounds nothing).
/// </summary>
/// <remarks>
/// <para>Accounting: <see cref="CurrentBytes"/> counts every buffer this pool has obtained from the allocator and not
/// yet dropped, whether lent out or cached for reuse; it never exceeds the budget. When a new buffer would exceed the
/// budget, cached buffers of other classes are dropped first; if that is not enough the request fails (the caller
/// waits for a buffer to come back, or after a while uses the reserve). Emergency buffers are counted separately.</para>
/// <para>Caching: a class caches at most <c>maxRetained</c> buffers; the count is kept here, so the object pool is
/// never asked to retain more than it can hold (it would drop the buffer silently and the accounting would drift).</para>
/// <para>Locking: no lock. Budget and counts are updated with interlocked operations; the object pools are
/// thread-safe. Renting and returning a cached buffer allocate nothing. The allocator (which may stall) is called only
/// from <see cref="TryRent"/>, which the journal calls only outside its locks.</para>
/// </remarks>
internal sealed class BoundedBufferPool
{
    /// <summary>The smallest class (64 B).</summary>
    public const int MinClassShift = 6;

    /// <summary>The largest class (16 MiB): the largest buffer the journal ever asks for.</summary>
    public const int MaxClassShift = 24;

    /// <summary>Largest request the pool serves.</summary>
    public const int MaxBufferBytes = 1 << MaxClassShift;

    private readonly IBufferAllocator _allocator;
    private readonly ObjectPool<byte[]>[] _classes;
    private readonly int[] _cached;
    private readonly int[] _maxRetained;
    private readonly AsyncSignal _returned = new();
    private long _current, _peak, _failures, _allocations;

    /// <summary>
    /// A pool of <paramref name="budgetBytes"/> with an emergency reserve of <paramref name="reserveBytes"/> in
    /// buffers of <paramref name="reserveBufferBytes"/>. <paramref name="exactBufferBytes"/>, when not 0 and not a power
    /// of two, adds one class of exactly that size (the log buffers: a header block plus a power-of-two payload), so
    /// that they are not rounded up to twice their size.
    /// </summary>
    public BoundedBufferPool(long budgetBytes, long reserveBytes, int reserveBufferBytes, IBufferAllocator? allocator, int exactBufferBytes = 0)
    {
        BudgetBytes = budgetBytes;
        _allocator = allocator ?? GcBufferAllocator.Instance;
        Reserve = new EmergencyReserve(reserveBytes, reserveBufferBytes);
        ExactBufferBytes = exactBufferBytes > 0 && exactBufferBytes <= MaxBufferBytes && !System.Numerics.BitOperations.IsPow2(exactBufferBytes) ? exactBufferBytes : 0;
        int n = MaxClassShift - MinClassShift + 2; // the power-of-two classes, then the exact class (unused when 0)
        _classes = new ObjectPool<byte[]>[n];
        _cached = new int[n];
        _maxRetained = new int[n];
        for (int i = 0; i < n; i++)
        {
            long size = i == n - 1 ? Math.Max(1, ExactBufferBytes) : 1L << (i + MinClassShift);
            int retain = (int)Math.Clamp(budgetBytes / size, 1, 4096);
            _maxRetained[i] = retain;
            // +1 so the object pool's own capacity is never the limit (ours is).
            _classes[i] = new DefaultObjectPool<byte[]>(EmptyOnMissPolicy.Instance, retain + 1);
        }
    }

    /// <summary>The byte budget.</summary>
    public long BudgetBytes { get; }

    /// <summary>The size of the exact class, or 0 when there is none.</summary>
    public int ExactBufferBytes { get; }

    private int ExactIndex => _classes.Length - 1;

    /// <summary>The emergency reserve.</summary>
    public EmergencyReserve Reserve { get; }

    /// <summary>Bytes obtained from the allocator and not dropped (lent out or cached).</summary>
    public long CurrentBytes => Interlocked.Read(ref _current);

    /// <summary>The most <see cref="CurrentBytes"/> ever was.</summary>
    public long PeakBytes => Interlocked.Read(ref _peak);

    /// <summary>Requests the pool could not serve (budget exhausted or allocator failed).</summary>
    public long Failures => Interlocked.Read(ref _failures);

    /// <summary>Buffers obtained from the allocator.</summary>
    public long Allocations => Interlocked.Read(ref _allocations);

    /// <summary>The size a request of <paramref name="length"/> bytes is rounded up to.</summary>
    public static int ClassSize(int length) => 1 << (ClassIndex(length) + MinClassShift);

    private static int ClassIndex(int length)
    {
        if (length <= 1 << MinClassShift) return 0;
        int shift = 32 - System.Numerics.BitOperations.LeadingZeroCount((uint)(length - 1));
        return shift - MinClassShift;
    }

    /// <summary>
    /// A buffer of at least <paramref name="length"/> bytes from the cache or the allocator, within the budget; null
    /// when neither can serve it now. May block if the allocator stalls. Never uses the reserve.
    /// </summary>
    public byte[]? TryRent(int length)
    {
        if ((uint)length > MaxBufferBytes)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"buffer of {length} bytes is larger than the {MaxBufferBytes}-byte maximum");
        bool exact = length == ExactBufferBytes && length != 0;
        int ci = exact ? ExactIndex : ClassIndex(length);
        var cached = _classes[ci].Get();
        if (cached.Length != 0)
        {
            Interlocked.Decrement(ref _cached[ci]);
            return cached;
        }
        int size = exact ? length : 1 << (ci + MinClassShift);
        if (!TryCharge(size))
        {
            TrimCaches(size);
            if (!TryCharge(size)) { Interlocked.Increment(ref _failures); return null; }
        }
        var fresh = _allocator.TryAllocate(size);
        if (fresh is null || fresh.Length != size)
        {
            Interlocked.Add(ref _current, -size);
            Interlocked.Increment(ref _failures);
            return null;
        }
        Interlocked.Increment(ref _allocations);
        return fresh;
    }

    /// <summary>
    /// A cached buffer of at least <paramref name="length"/> bytes, or null when its class has none cached. Never calls
    /// the allocator (so never blocks) and never uses the reserve: safe on the push path.
    /// </summary>
    public byte[]? TryRentCached(int length)
    {
        if ((uint)length > MaxBufferBytes)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"buffer of {length} bytes is larger than the {MaxBufferBytes}-byte maximum");
        int ci = length == ExactBufferBytes && length != 0 ? ExactIndex : ClassIndex(length);
        var cached = _classes[ci].Get();
        if (cached.Length == 0) return null;
        Interlocked.Decrement(ref _cached[ci]);
        return cached;
    }

    /// <summary>Gives a buffer back: to the reserve if it came from there, else to its class cache (or drops it).</summary>
    public void Return(byte[] buffer)
    {
        if (buffer.Length == 0) return;
        bool exact = buffer.Length == ExactBufferBytes;
        if (!exact && !System.Numerics.BitOperations.IsPow2(buffer.Length) || buffer.Length < 1 << MinClassShift || Reserve.Owns(buffer))
        {
            Reserve.Return(buffer);
        }
        else
        {
            int ci = exact ? ExactIndex : ClassIndex(buffer.Length);
            if (Interlocked.Increment(ref _cached[ci]) <= _maxRetained[ci]) _classes[ci].Return(buffer);
            else
            {
                Interlocked.Decrement(ref _cached[ci]);
                Interlocked.Add(ref _current, -buffer.Length);
            }
        }
        if (_returned.HasWaiters) _returned.Set();
    }

    /// <summary>Completes when a buffer comes back (or at once if one came back since the last wait).</summary>
    public Task WaitForReturnAsync() => _returned.WaitAsync();

    private bool TryCharge(int size)
    {
        while (true)
        {
            long cur = Interlocked.Read(ref _current);
            if (cur + size > BudgetBytes) return false;
            if (Interlocked.CompareExchange(ref _current, cur + size, cur) == cur)
            {
                long peak;
                while ((peak = Interlocked.Read(ref _peak)) < cur + size
                       && Interlocked.CompareExchange(ref _peak, cur + size, peak) != peak) { }
                return true;
            }
        }
    }

    /// <summary>Drops cached buffers (largest classes first) until <paramref name="needed"/> more bytes fit the budget.</summary>
    private void TrimCaches(int needed)
    {
        for (int ci = _classes.Length - 1; ci >= 0; ci--)
        {
            while (Interlocked.Read(ref _current) + needed > BudgetBytes && Volatile.Read(ref _cached[ci]) > 0)
            {
                var b = _classes[ci].Get();
                if (b.Length == 0) break;
                Interlocked.Decrement(ref _cached[ci]);
                Interlocked.Add(ref _current, -b.Length);
            }
            if (Interlocked.Read(ref _current) + needed <= BudgetBytes) return;
        }
    }

    /// <summary>Object-pool policy: a miss yields the empty array (so the pool itself never allocates).</summary>
    private sealed class EmptyOnMissPolicy : IPooledObjectPolicy<byte[]>
    {
        public static readonly EmptyOnMissPolicy Instance = new();
        public byte[] Create() => Array.Empty<byte>();
        public bool Return(byte[] obj) => obj.Length != 0;
    }
}
