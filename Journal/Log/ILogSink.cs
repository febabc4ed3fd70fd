using Journal.Format;

namespace Journal.Log;

/// <summary>
/// What the committed-item list (push) and the AIL need from the on-disk log. <c>LogWriter</c> is the real
/// implementation; the CIL depends only on this seam.
/// </summary>
/// <remarks>
/// A log transaction (one per checkpoint) is written as: <see cref="WriteAsync"/> with <c>start = true</c> (emits the
/// start op and the regions), optionally more <see cref="WriteAsync"/> calls with <c>start = false</c>, then
/// <see cref="WriteCommitAsync"/>. Ops of different transactions may interleave in the log; recovery reassembles them by
/// transaction id and delivers a transaction only when its commit op is found. Callers that need commit records in a
/// particular order (the CIL: checkpoint sequence order) must call <see cref="WriteCommitAsync"/> in that order.
/// </remarks>
public interface ILogSink
{
    /// <summary>Size of the log in 512-byte blocks.</summary>
    uint LogBlocks { get; }

    /// <summary>The LSN the next record will get (cycle and block of the next write).</summary>
    Lsn Head { get; }

    /// <summary>The oldest LSN recovery still needs. New records carry it.</summary>
    Lsn Tail { get; }

    /// <summary>Every record with an LSN at or below this one is on stable storage.</summary>
    Lsn DurableLsn { get; }

    /// <summary>Bytes of log between the tail and the head (whole blocks, headers included).</summary>
    long UsedBytes { get; }

    /// <summary>
    /// Worst-case log bytes needed to write <paramref name="regions"/> regions totalling <paramref name="payloadBytes"/>
    /// bytes as part of one transaction (op headers, record headers and block padding included).
    /// </summary>
    long GetReservationBytes(int regions, long payloadBytes);

    /// <summary>Allocates a transaction id for a new log transaction.</summary>
    uint AllocateTransactionId();

    /// <summary>
    /// Copies the regions of transaction <paramref name="tid"/> into in-core log buffers (splitting a region across
    /// records when it does not fit) and returns the LSN of the record holding the first op written by this call.
    /// May wait for a free log buffer or, if the log is full, for the tail to move. Not durable until forced.
    /// </summary>
    ValueTask<Lsn> WriteAsync(uint tid, IReadOnlyList<ReadOnlyMemory<byte>> regions, bool start, CancellationToken cancellationToken = default);

    /// <summary>Writes the commit op of <paramref name="tid"/>; returns the LSN of the record that holds it.</summary>
    ValueTask<Lsn> WriteCommitAsync(uint tid, CancellationToken cancellationToken = default);

    /// <summary>
    /// Returns once the record at <paramref name="lsn"/> and every earlier record are on stable storage. Submits the
    /// current in-core buffer if it holds that record. Concurrent forces share one device flush. A force of an LSN
    /// that is already durable does no I/O.
    /// </summary>
    ValueTask ForceAsync(Lsn lsn, CancellationToken cancellationToken = default);

    /// <summary>Moves the tail forward (never backward): records before <paramref name="tail"/> are no longer needed.</summary>
    void MoveTail(Lsn tail);

    /// <summary>Completes when the tail next moves (or at once if the log has space again); used by space waiters.</summary>
    Task WaitForTailMoveAsync(CancellationToken cancellationToken = default);
}
