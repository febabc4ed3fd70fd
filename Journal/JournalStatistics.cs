namespace Journal;

/// <summary>Counters of a <see cref="MetadataJournal"/> since it was created or opened.</summary>
/// <param name="Commits">Transactions committed (with at least one item).</param>
/// <param name="ItemsCommitted">Item commits (one per dirty item per transaction).</param>
/// <param name="Relogs">Item commits that found the item already in the current checkpoint (formatted in place or swapped).</param>
/// <param name="Pushes">Context switches (checkpoints started).</param>
/// <param name="Checkpoints">Checkpoints whose commit record was written to the log.</param>
/// <param name="CheckpointBytes">Bytes of checkpoint regions handed to the log (headers included, log record overhead not).</param>
/// <param name="Forces">Force requests that had to wait (a force of an already durable sequence is not counted).</param>
/// <param name="AilWriteBacks">Items written home by the AIL.</param>
/// <param name="AilFlushes">Home-device flushes issued by the AIL.</param>
/// <param name="TailMoves">Times the AIL moved the log tail.</param>
/// <param name="HardLimitWaits">Commits that waited at the hard CIL limit.</param>
/// <param name="SpaceWaits">Reservations that waited for log space.</param>
/// <param name="MemoryWaits">Commits that waited for pool memory.</param>
/// <param name="ReservationOverruns">Commits whose transaction reserved less log space than its items needed (the rest was taken without waiting).</param>
/// <param name="CurrentSequence">Sequence of the checkpoint now collecting commits.</param>
/// <param name="DurableSequence">Highest sequence whose checkpoint is durable (every lower one is too).</param>
/// <param name="AilItems">Items in the AIL now.</param>
/// <param name="ReservedLogBytes">Log space reserved now by open transactions and unwritten checkpoints.</param>
/// <param name="LogBytesWritten">Bytes the log writer wrote to the device (records, padding); 0 when the log is not a <see cref="Log.LogWriter"/>.</param>
/// <param name="Gathers">Pushes that held the current context open for the committers the previous checkpoint's completion woke (<see cref="JournalOptions.CheckpointGatherWindow"/>).</param>
/// <param name="GatherTimeouts">Of those, the ones that ended because the window passed before the committers were back.</param>
public readonly record struct JournalStatistics(
    long Commits, long ItemsCommitted, long Relogs, long Pushes, long Checkpoints, long CheckpointBytes, long Forces,
    long AilWriteBacks, long AilFlushes, long TailMoves, long HardLimitWaits, long SpaceWaits, long MemoryWaits, long ReservationOverruns,
    ulong CurrentSequence, ulong DurableSequence, long AilItems, long ReservedLogBytes, long LogBytesWritten,
    long Gathers, long GatherTimeouts);

/// <summary>Memory use of a <see cref="MetadataJournal"/>'s pool.</summary>
/// <param name="BudgetBytes">The configured budget.</param>
/// <param name="PoolCurrentBytes">Bytes the pool holds now (lent out or cached); never above the budget.</param>
/// <param name="PoolPeakBytes">The most the pool ever held.</param>
/// <param name="PoolFailures">Requests the pool could not serve at once (budget exhausted or allocator failed).</param>
/// <param name="EmergencyCurrent">Emergency buffers out now.</param>
/// <param name="EmergencyMax">The most emergency buffers ever out at once.</param>
/// <param name="EmergencyTotal">Emergency buffers ever handed out.</param>
/// <param name="LogBuffersHeld">In-core log buffers the log writer holds now: its reserve, plus those rented from the pool (counted in <paramref name="PoolCurrentBytes"/>); 0 when the log is not a <see cref="Log.LogWriter"/>.</param>
/// <param name="LogBuffersReserved">Of those, the ones it holds from open to close (outside the budget, like the emergency reserve).</param>
/// <param name="LogBufferRentFailures">Times the pool could not lend the log writer a buffer (it went on with those it held).</param>
public readonly record struct MemoryStatistics(
    long BudgetBytes, long PoolCurrentBytes, long PoolPeakBytes, long PoolFailures,
    long EmergencyCurrent, long EmergencyMax, long EmergencyTotal,
    long LogBuffersHeld, long LogBuffersReserved, long LogBufferRentFailures);
