namespace Snapshot.Nbd;

/// <summary>
/// Payload buffers of the NBD server: one array per READ or WRITE in flight, in power-of-two size classes from 4 KiB to
/// 32 MiB, each with <see cref="Headroom"/> bytes in front so a reply header can be written just before the data and
/// the reply sent with one call. Returned arrays are kept for reuse up to <see cref="MaxRetainedBytes"/> in total (past
/// it they are dropped to the garbage collector), so the steady-state read and write path allocates nothing while the
/// memory the pool keeps stays bounded. What is in use at once is bounded by the server's in-flight byte bound (<see cref="NbdServerBudget"/>), which
/// also bounds what is retained.
/// </summary>
/// <remarks>Locking: each class's stack is its own lock, held for a push or a pop; <c>_retained</c> is updated with
/// interlocked operations. Nothing waits.</remarks>
internal sealed class NbdBufferPool
{
    /// <summary>Bytes in front of the payload of every buffer (the longest reply header is 28 bytes).</summary>
    public const int Headroom = 32;

    private const int MinShift = 12;
    private const int MaxShift = 25;

    private readonly Stack<byte[]>[] _classes = new Stack<byte[]>[MaxShift - MinShift + 1];
    private long _retained; // payload bytes (size classes) of the arrays kept
    private long _allocated;
    private long _inUse;    // payload bytes (size classes) of the arrays lent out
    private long _peakInUse;
    private long _dropped;  // bytes of arrays given up to the garbage collector since the last TakeDropped

    public NbdBufferPool(long maxRetainedBytes)
    {
        MaxRetainedBytes = maxRetainedBytes;
        for (int i = 0; i < _classes.Length; i++) _classes[i] = new Stack<byte[]>();
    }

    /// <summary>Most payload bytes (size classes, not counting headroom) kept in the pool for reuse.</summary>
    public long MaxRetainedBytes { get; }

    /// <summary>Payload bytes of arrays kept for reuse now.</summary>
    public long RetainedBytes => Interlocked.Read(ref _retained);

    /// <summary>Bytes of arrays allocated since the pool was made (a steady state adds none).</summary>
    public long AllocatedBytes => Interlocked.Read(ref _allocated);

    /// <summary>Payload bytes of arrays lent out now.</summary>
    public long InUseBytes => Interlocked.Read(ref _inUse);

    /// <summary>Most payload bytes of arrays lent out at once.</summary>
    public long PeakInUseBytes => Interlocked.Read(ref _peakInUse);

    /// <summary>
    /// The payload bytes of the array <see cref="Rent"/> gives for <paramref name="payload"/> bytes (its size class: a power
    /// of two, at least 4 KiB): what a request is charged against the in-flight bounds.
    /// </summary>
    public static long ClassBytes(long payload) => 1L << ShiftOf(payload);

    private static int ShiftOf(long payload) =>
        Math.Max(MinShift, 64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)Math.Max(1, payload) - 1));

    /// <summary>An array of at least <see cref="Headroom"/> + <paramref name="payload"/> bytes.</summary>
    public byte[] Rent(int payload)
    {
        int shift = ShiftOf(payload);
        if (shift > MaxShift) throw new ArgumentOutOfRangeException(nameof(payload), payload, "larger than the largest request");
        Lent(1L << shift);
        var stack = _classes[shift - MinShift];
        lock (stack)
        {
            if (stack.TryPop(out var b))
            {
                Interlocked.Add(ref _retained, -(1L << shift));
                return b;
            }
        }
        int length = (1 << shift) + Headroom;
        Interlocked.Add(ref _allocated, length);
        return new byte[length];
    }

    /// <summary>Gives an array from <see cref="Rent"/> back.</summary>
    public void Return(byte[] buffer)
    {
        int payload = buffer.Length - Headroom;
        int shift = System.Numerics.BitOperations.Log2((uint)payload);
        Interlocked.Add(ref _inUse, -payload);
        if (Interlocked.Add(ref _retained, payload) > MaxRetainedBytes)
        {
            Interlocked.Add(ref _retained, -payload);
            Interlocked.Add(ref _dropped, buffer.Length);
            return;
        }
        var stack = _classes[shift - MinShift];
        lock (stack) stack.Push(buffer);
    }

    /// <summary>Bytes of arrays given up to the garbage collector (past <see cref="MaxRetainedBytes"/>) since the last <see cref="Trim"/>.</summary>
    public long DroppedBytes => Interlocked.Read(ref _dropped);

    /// <summary>
    /// Drops every array kept for reuse (after a burst, with no client left). Returns the bytes given up to the garbage
    /// collector since the last call, these included.
    /// </summary>
    public long Trim()
    {
        foreach (var stack in _classes)
        {
            lock (stack)
            {
                while (stack.TryPop(out var b))
                {
                    Interlocked.Add(ref _retained, -(b.Length - Headroom));
                    Interlocked.Add(ref _dropped, b.Length);
                }
            }
        }
        return Interlocked.Exchange(ref _dropped, 0);
    }

    private void Lent(long bytes)
    {
        long now = Interlocked.Add(ref _inUse, bytes);
        long peak;
        while (now > (peak = Interlocked.Read(ref _peakInUse)) && Interlocked.CompareExchange(ref _peakInUse, now, peak) != peak) { }
    }
}
