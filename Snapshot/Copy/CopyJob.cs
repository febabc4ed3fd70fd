using Snapshot.Exceptions;

namespace Snapshot.Copy;

/// <summary>
/// One copy-on-write job: the origin chunk to copy and the pending exceptions (one per snapshot that lacks the chunk)
/// it fills. The origin chunk is read once, in pieces of <see cref="Buffer"/>'s size, and each piece is written to
/// every snapshot's COW chunk. Objects come from a bounded pool and keep their buffer.
/// </summary>
internal sealed class CopyJob
{
    public CopyJob(int bufferBytes) => Buffer = new byte[bufferBytes];

    /// <summary>The copy buffer (a chunk, or a 64 KiB piece of a larger chunk).</summary>
    public readonly byte[] Buffer;

    /// <summary>The origin chunk.</summary>
    public ulong OldChunk;

    /// <summary>The exceptions being filled.</summary>
    public readonly List<PendingException> Pending = new();

    /// <summary>Throttle slots held for this job (released once, at completion).</summary>
    public int Slots;

    public void Reset()
    {
        OldChunk = 0;
        Pending.Clear();
        Slots = 0;
    }

    /// <inheritdoc/>
    public override string ToString() => $"CopyJob(chunk {OldChunk}, {Pending.Count} exceptions, {Slots} slots)";
}
