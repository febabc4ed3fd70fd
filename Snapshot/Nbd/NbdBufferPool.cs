namespace Snapshot.Nbd;

/// <summary>
/// Payload buffers of the NBD server: one array per READ or WRITE in flight, in power-of-two size classes from 4 KiB to
/// 32 MiB, each with <see cref="Headroom"/> bytes in front so a reply header can be written just before the data and
/// the reply sent with one call. Returned arrays are kept for reuse up to <see cref="MaxRetainedBytes"/> in total (past
/// it they are dropped to the garbage collector), so the steady-state read and write path allocates nothing while the
/// memory the pool keeps stays bounded. What is in use at once is bounded by the connections' in-flight byte bounds.
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
    private long _retained;
    private long _allocated;

    public NbdBufferPool(long maxRetainedBytes)
    {
        MaxRetainedBytes = maxRetainedBytes;
        for (int i = 0; i < _classes.Length; i++) _classes[i] = new Stack<byte[]>();
    }

    /// <summary>Most bytes kept in the pool for reuse.</summary>
    public long MaxRetainedBytes { get; }

    /// <summary>Bytes of arrays allocated since the pool was made (a steady state adds none).</summary>
    public long AllocatedBytes => Interlocked.Read(ref _allocated);

    /// <summary>An array of at least <see cref="Headroom"/> + <paramref name="payload"/> bytes.</summary>
    public byte[] Rent(int payload)
    {
        int shift = Math.Max(MinShift, 64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)Math.Max(1, payload) - 1));
        if (shift > MaxShift) throw new ArgumentOutOfRangeException(nameof(payload), payload, "larger than the largest request");
        var stack = _classes[shift - MinShift];
        lock (stack)
        {
            if (stack.TryPop(out var b))
            {
                Interlocked.Add(ref _retained, -b.Length);
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
        if (Interlocked.Add(ref _retained, buffer.Length) > MaxRetainedBytes)
        {
            Interlocked.Add(ref _retained, -buffer.Length);
            return;
        }
        var stack = _classes[shift - MinShift];
        lock (stack) stack.Push(buffer);
    }
}
