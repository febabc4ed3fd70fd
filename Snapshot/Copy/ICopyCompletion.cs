using Snapshot.Exceptions;
using Snapshot.Format;

namespace Snapshot.Copy;

/// <summary>
/// What the copy engine reports to the data path when a copy is over, instead of calling into the store: the data
/// path owns the pending and complete tables and the throttle.
/// </summary>
internal interface ICopyCompletion
{
    /// <summary>
    /// Says the data of <paramref name="slots"/> copies is written and handed to the commit pipeline (or they failed):
    /// their in-flight throttle slots are free, their pending ones stay until <see cref="Complete"/>. Never waits.
    /// </summary>
    void CopiesWritten(int slots);

    /// <summary>
    /// Moves each exception to its snapshot's complete table (or drops it and frees its chunk when it was not
    /// committed), wakes its waiters, returns it to its pool, and gives back <paramref name="slots"/> pending throttle slots (whose in-flight stage
    /// <see cref="CopiesWritten"/> ended).
    /// Never waits (takes the state lock and the throttle's leaf lock).
    /// </summary>
    void Complete(List<PendingException> pending, int slots);

    /// <summary>Invalidates a snapshot whose COW file failed (once; later calls share the first).</summary>
    Task InvalidateAsync(SnapshotState snapshot, InvalidReasonCode code);
}
