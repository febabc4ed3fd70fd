using Snapshot.Commit;
using Snapshot.Exceptions;

namespace Snapshot.Copy;

/// <summary>
/// One copy-on-write job: a run of consecutive origin chunks (<see cref="FirstChunk"/> .. <see cref="LastChunk"/>) and
/// the pending exceptions it fills, one per (chunk, snapshot) that lacks the chunk, grouped by snapshot and in chunk
/// order inside a group. The run is read from the origin once, in one request, and each group is written to its COW
/// file in one request per stretch of consecutive new chunks (allocation hands out consecutive chunks, so usually one).
/// Objects come from a bounded pool and are reused; the copy buffer is rented for the copy only.
/// </summary>
internal sealed class CopyPlan
{
    /// <summary>First origin chunk of the run.</summary>
    public ulong FirstChunk;

    /// <summary>Last origin chunk of the run (inclusive).</summary>
    public ulong LastChunk;

    /// <summary>The exceptions being filled: grouped by snapshot, chunks ascending in each group.</summary>
    public readonly List<PendingException> Pending = new();

    /// <summary>Throttle slots held for this plan (released once, at completion).</summary>
    public int Slots;

    /// <summary>
    /// The run's ticket when it was announced to the commit pipeline (<c>CommitPipeline.Expect</c>), else none: the
    /// copy engine hands it in with the copies it queues, or reports the run as arrived when the copy fails before that.
    /// </summary>
    public RunTicket Expected;

    /// <summary>Chunks in the run.</summary>
    public int ChunkCount => (int)(LastChunk - FirstChunk + 1);

    public void Reset()
    {
        FirstChunk = LastChunk = 0;
        Pending.Clear();
        Slots = 0;
        Expected = default;
    }

    /// <inheritdoc/>
    public override string ToString() => $"CopyPlan(chunks {FirstChunk}..{LastChunk}, {Pending.Count} exceptions, {Slots} slots)";
}
