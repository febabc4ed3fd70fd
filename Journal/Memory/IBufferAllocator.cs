namespace Journal.Memory;

/// <summary>
/// Where the journal's bounded pools get fresh buffers from. The default takes them from the garbage-collected heap;
/// tests inject allocators that fail (return <see langword="null"/>) or stall, to prove that the push path keeps
/// making progress under memory pressure.
/// </summary>
/// <remarks>
/// The pools call this outside every journal lock. An implementation may block (a stall) or fail; it must never
/// throw for an ordinary failure to allocate.
/// </remarks>
public interface IBufferAllocator
{
    /// <summary>
    /// Returns a new buffer of exactly <paramref name="length"/> bytes, or <see langword="null"/> when memory is not
    /// available now. Callers fall back to waiting or to the emergency reserve.
    /// </summary>
    byte[]? TryAllocate(int length);
}

/// <summary>The default allocator: uninitialised arrays from the garbage-collected heap; fails only on out-of-memory.</summary>
internal sealed class GcBufferAllocator : IBufferAllocator
{
    public static readonly GcBufferAllocator Instance = new();

    public byte[]? TryAllocate(int length)
    {
        try { return GC.AllocateUninitializedArray<byte>(length); }
        catch (OutOfMemoryException) { return null; }
    }
}
